// The demo's microservices: small node:http servers that say which instance
// answered, so balancing is visible from curl. Each has /health. Ports come
// from USERS1_PORT, USERS2_PORT, ORDERS1_PORT, ORDERS2_PORT and CATALOG_PORT
// (routes.yaml reads the same variables), else 3001-3005.
import http from "node:http";

export const instances = [
  { service: "users", instance: "users-1", port: Number(process.env.USERS1_PORT ?? 3001) },
  { service: "users", instance: "users-2", port: Number(process.env.USERS2_PORT ?? 3002) },
  { service: "orders", instance: "orders-1", port: Number(process.env.ORDERS1_PORT ?? 3003) },
  { service: "orders-v2", instance: "orders-v2", port: Number(process.env.ORDERS2_PORT ?? 3004) },
  { service: "catalog", instance: "catalog-1", port: Number(process.env.CATALOG_PORT ?? 3005) },
];

export function startServices() {
  return Promise.all(
    instances.map(
      ({ service, instance, port }) =>
        new Promise((resolve, reject) => {
          const server = http.createServer((req, res) => {
            if (req.url === "/health") return res.end("ok");
            let bytes = 0;
            req.on("data", (c) => {
              bytes += c.length;
            });
            req.on("end", () => {
              res.setHeader("content-type", "application/json");
              res.setHeader("cache-control", "max-age=10");
              res.end(
                `${JSON.stringify({ service, instance, method: req.method, path: req.url, bodyBytes: bytes, requestId: req.headers["x-request-id"], user: req.headers["x-user-id"], at: new Date().toISOString() })}\n`,
              );
            });
          });
          server.once("error", reject);
          server.listen(port, "127.0.0.1", () => resolve(server));
        }),
    ),
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await startServices();
  for (const i of instances) console.log(`${i.instance} on http://127.0.0.1:${i.port}`);
}
