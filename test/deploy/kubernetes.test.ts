/**
 * deploy/kubernetes (issue 14): every manifest parses, kustomization.yaml
 * lists them all, and the fields an operator relies on are there and agree
 * with each other and with the ConfigMap's routes.yaml (probe ports = the
 * admin listener, container port = the L7 listener, grace period > preStop +
 * shutdownTimeout, selectors = pod labels). `switchyard --check` passes on
 * the ConfigMap's routes.yaml. No cluster here: this is what can be checked
 * without one.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { ms } from "../../src/config/duration.js";
import { parseConfig } from "../../src/config/load.js";

const dir = join(import.meta.dirname, "..", "..", "deploy", "kubernetes");
// biome-ignore lint/suspicious/noExplicitAny: manifests are untyped YAML; the assertions below are their types.
type Doc = Record<string, any>;

/** Every document of every manifest, each parsed strictly (a YAML error fails the test). */
function manifests(): { file: string; doc: Doc }[] {
  const out: { file: string; doc: Doc }[] = [];
  for (const file of readdirSync(dir).filter((f) => /\.ya?ml$/.test(f))) {
    for (const d of parseAllDocuments(readFileSync(join(dir, file), "utf8"))) {
      assert.deepEqual(d.errors, [], `${file} parses`);
      out.push({ file, doc: d.toJS() as Doc });
    }
  }
  return out;
}
const all = manifests();
const only = (kind: string): Doc => {
  const found = all.filter((m) => m.doc.kind === kind);
  assert.equal(found.length, 1, `exactly one ${kind}`);
  return found[0].doc;
};
const deployment = only("Deployment");
const configMap = only("ConfigMap");
const routesYaml: string = configMap.data["routes.yaml"];
// Env references are what the pod's env fills in; the shape is what matters here.
const routes = parseConfig(routesYaml, {
  env: { ADMIN_TOKEN: "t", REDIS_URL: "redis://redis:6379", STICKY_SECRET: "0123456789abcdef0123" },
});
const pod = deployment.spec.template.spec;
const container = pod.containers.find((c: Doc) => c.name === "switchyard");
const portNamed = (name: string) => container.ports.find((p: Doc) => p.name === name)?.containerPort;
const podLabels = deployment.spec.template.metadata.labels;
const selects = (selector: Record<string, string>) =>
  Object.entries(selector).every(([k, v]) => podLabels[k] === v) && Object.keys(selector).length > 0;

describe("deploy/kubernetes", () => {
  test("kustomization.yaml lists every manifest, and every listed file exists", () => {
    const k = parseYaml(readFileSync(join(dir, "kustomization.yaml"), "utf8"));
    const files = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f) && f !== "kustomization.yaml");
    assert.deepEqual([...k.resources].sort(), files.sort());
    assert.deepEqual(
      all.map((m) => m.doc.kind).sort(),
      [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Kustomization",
        "PodDisruptionBudget",
        "Service",
      ].sort(),
    );
  });

  test("Deployment: 2 replicas, probes on the admin listener, preStop, requests, non-root, read-only root", () => {
    assert.equal(deployment.spec.replicas, 2);
    assert.ok(selects(deployment.spec.selector.matchLabels));
    const admin = routes.admin!;
    assert.equal(admin.host, "0.0.0.0", "probes come from the kubelet, outside the pod");
    assert.equal(portNamed("admin"), admin.port);
    assert.equal(portNamed("http"), routes.listen[0].port);
    for (const [probe, path] of [
      ["readinessProbe", "/readyz"],
      ["livenessProbe", "/healthz"],
    ]) {
      const p = container[probe].httpGet;
      assert.equal(p.path, path);
      assert.equal(
        p.port === "admin" ? portNamed("admin") : p.port,
        admin.port,
        `${probe} hits the admin port`,
      );
    }
    const sleep = container.lifecycle.preStop.exec.command;
    assert.equal(sleep[0], "sleep");
    const preStop = Number(sleep[1]) * 1000;
    assert.ok(preStop >= 3000, "long enough for endpoints to catch up");
    assert.ok(
      pod.terminationGracePeriodSeconds * 1000 > preStop + ms(routes.shutdownTimeout),
      "the kubelet never SIGKILLs a drain",
    );
    assert.ok(container.resources.requests.cpu && container.resources.requests.memory);
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.ok(Number.isInteger(pod.securityContext.runAsUser) && pod.securityContext.runAsUser > 0);
    assert.equal(container.securityContext.readOnlyRootFilesystem, true);
    assert.equal(container.securityContext.allowPrivilegeEscalation, false);
    assert.deepEqual(container.securityContext.capabilities.drop, ["ALL"]);
  });

  test("the ConfigMap is mounted as a directory (subPath mounts never see updates) where --config points", () => {
    const vol = pod.volumes.find((v: Doc) => v.configMap?.name === configMap.metadata.name);
    assert.ok(vol, "the ConfigMap is a volume");
    const mount = container.volumeMounts.find((m: Doc) => m.name === vol.name);
    assert.equal(mount.subPath, undefined);
    const args: string[] = container.args;
    assert.equal(args[args.indexOf("--config") + 1], `${mount.mountPath}/routes.yaml`);
    assert.equal(routes.watch, true, "a changed ConfigMap reloads in place");
    // Every ${VAR} routes.yaml needs comes from the pod's env.
    const env = new Set(container.env.map((e: Doc) => e.name));
    for (const [, name] of routesYaml.matchAll(/\$\{([A-Z0-9_]+)\}/g)) assert.ok(env.has(name), name);
  });

  test("replicas share state: a Redis store, one sticky secret for every pod", () => {
    assert.equal(routes.store?.type, "redis");
    for (const s of Object.values(routes.services))
      if (s.sticky) assert.match(routesYaml, /secret: \$\{STICKY_SECRET\}/);
  });

  test("Service, PodDisruptionBudget and HorizontalPodAutoscaler point at the Deployment's pods", () => {
    const svc = only("Service");
    assert.ok(selects(svc.spec.selector));
    for (const p of svc.spec.ports) assert.ok(portNamed(p.targetPort) ?? p.targetPort, p.name);
    const pdb = only("PodDisruptionBudget");
    assert.ok(selects(pdb.spec.selector.matchLabels));
    assert.ok(pdb.spec.minAvailable >= 1 && pdb.spec.minAvailable < deployment.spec.replicas);
    const hpa = only("HorizontalPodAutoscaler");
    assert.equal(hpa.apiVersion, "autoscaling/v2");
    assert.deepEqual(
      [hpa.spec.scaleTargetRef.kind, hpa.spec.scaleTargetRef.name],
      ["Deployment", deployment.metadata.name],
    );
    assert.ok(hpa.spec.minReplicas >= 2 && hpa.spec.maxReplicas > hpa.spec.minReplicas);
    assert.ok(container.resources.requests.cpu, "CPU utilisation needs a CPU request");
  });

  test("switchyard --check passes on the ConfigMap's routes.yaml", () => {
    const tmp = mkdtempSync(join(tmpdir(), "sy-k8s-"));
    try {
      const file = join(tmp, "routes.yaml");
      writeFileSync(file, routesYaml);
      const env = {
        ADMIN_TOKEN: "t",
        REDIS_URL: "redis://redis:6379",
        STICKY_SECRET: "0123456789abcdef0123",
      };
      const r = spawnSync(process.execPath, ["--import", "tsx", "src/cli.ts", "--check", "--config", file], {
        encoding: "utf8",
        env: { ...process.env, ...env },
      });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /OK \(1 route, 1 service, 1 listener/);
      // Without the pod's env it is refused: the check is real.
      const bare = spawnSync(
        process.execPath,
        ["--import", "tsx", "src/cli.ts", "--check", "--config", file],
        {
          encoding: "utf8",
          env: { PATH: process.env.PATH },
        },
      );
      assert.equal(bare.status, 1);
      assert.match(bare.stderr, /ADMIN_TOKEN/);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
