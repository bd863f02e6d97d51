// Peer: Fastify 5 + @fastify/http-proxy with its defaults, proxying everything to the upstream.
// usage: node bench/peers/fastify-http-proxy.mjs http://127.0.0.1:PORT  -> prints {"port":N}
import proxy from "@fastify/http-proxy";
import Fastify from "fastify";
import { announce, listenPort, upstreamFromArgs } from "../lib/child.mjs";

const { url } = upstreamFromArgs();
const app = Fastify();
await app.register(proxy, { upstream: url });
await app.listen({ host: "127.0.0.1", port: listenPort() });
announce(app.server.address().port);
