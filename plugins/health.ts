/**
 * Health loops tied to the generation's lifecycle (ARCHITECTURE principle 6):
 * active checks start in onReady — the first probe of every target finishes
 * before the gateway listens or a reload swaps this generation in — and stop
 * in onClose, so a reloaded-away generation stops probing.
 */
import fp from "fastify-plugin";
import type { Generation } from "../src/generation.js";

export interface HealthOptions {
  generation: Generation;
}

export const healthChecks = fp<HealthOptions>(
  async function healthChecks(app, { generation }) {
    // Every service gets the logger (ejections are logged); only those with healthCheck probe.
    const services = [...generation.services.values()];
    app.addHook("onReady", async function startHealthChecks() {
      await Promise.all(services.map((s) => s.startHealthChecks(app.log)));
    });
    app.addHook("onClose", async function stopHealthChecks() {
      for (const s of services) s.stopHealthChecks();
    });
  },
  { name: "switchyard-health" },
);
