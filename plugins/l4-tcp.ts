/**
 * L4 TCP listeners (SPEC §2 `tcp`), tied to the app lifecycle (ARCHITECTURE
 * principle 6): bound in `onReady` so a port in use fails start-up (Fastify
 * only logs errors thrown in `onListen`), stop accepting in `preClose`, and
 * in `onClose` wait up to the drain time for open connections before
 * destroying them.
 *
 * Wrapped with fastify-plugin because it decorates the app with `l4Tcp` (the
 * listeners, whose `stats` the metrics plugin reads).
 */
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import { ms } from "../src/config/duration.js";
import type { Generation } from "../src/generation.js";
import { TcpProxy } from "../src/l4/tcp-proxy.js";

export interface L4TcpOptions {
  generation: Generation;
  /** How long open connections may take to finish on close (default: config.shutdownTimeout). */
  drainMs?: number;
}

declare module "fastify" {
  interface FastifyInstance {
    /** The L4 TCP listeners of this app, in config order. */
    l4Tcp: readonly TcpProxy[];
  }
}

async function l4Tcp(app: FastifyInstance, opts: L4TcpOptions): Promise<void> {
  const { config, services } = opts.generation;
  const drainMs = opts.drainMs ?? ms(config.shutdownTimeout);
  // The proxies put `listener` in every log line themselves.
  const proxies = config.tcp.map((listener) => new TcpProxy({ listener, services, log: app.log }));
  app.decorate("l4Tcp", proxies);

  app.addHook("onReady", async function bindTcpListeners() {
    const results = await Promise.allSettled(proxies.map((p) => p.start()));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) {
      // Do not leave the listeners that did bind holding their ports.
      await Promise.all(proxies.map((p) => p.stop(0)));
      throw failed.reason;
    }
    for (const p of proxies) app.log.info({ listener: p.name, address: p.address() }, "tcp listener bound");
  });

  app.addHook("preClose", async function stopAcceptingTcp() {
    for (const p of proxies) p.stopAccepting();
  });

  app.addHook("onClose", async function drainTcp() {
    await Promise.all(proxies.map((p) => p.drain(drainMs)));
  });
}

export default fp(l4Tcp, { name: "switchyard-l4-tcp", fastify: "5.x" });
export type { TcpStats } from "../src/l4/tcp-proxy.js";
export { TcpProxy };
