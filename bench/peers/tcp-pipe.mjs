// Peer: the bare node:net pipe, the floor of any Node L4 proxy.
// usage: node bench/peers/tcp-pipe.mjs tcp://127.0.0.1:PORT  -> prints {"port":N}
import net from "node:net";
import { announce, listenPort, upstreamFromArgs } from "../lib/child.mjs";

const { host, port } = upstreamFromArgs();

const server = net.createServer({ noDelay: true }, (client) => {
  const upstream = net.connect({ host, port, noDelay: true });
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on("error", close);
  upstream.on("error", close);
  client.pipe(upstream);
  upstream.pipe(client);
});
server.listen(listenPort(), "127.0.0.1", () => announce(server.address().port));
