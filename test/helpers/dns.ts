/**
 * A tiny authoritative DNS server on 127.0.0.1 (UDP, port 0) for discovery
 * tests, built on dns2: the records are a plain map the test edits while the
 * gateway runs, every query is recorded, and a name can be made to fail
 * (SERVFAIL) or the whole server to go silent. Never the machine's resolver.
 */
import type { AddressInfo } from "node:net";
import dns2 from "dns2";

const { Packet } = dns2;

export interface SrvRecord {
  priority: number;
  weight: number;
  port: number;
  target: string;
}

export interface DnsServer {
  /** "127.0.0.1:PORT", as `dnsServers:` takes it. */
  address: string;
  a: Map<string, { address: string; ttl: number }[]>;
  aaaa: Map<string, { address: string; ttl: number }[]>;
  srv: Map<string, SrvRecord[]>;
  /** Names answered SERVFAIL. */
  failing: Set<string>;
  /** Drop every query unanswered (a resolver that is down). */
  silent: boolean;
  /** Every question received: "A users.test", "AAAA users.test", "SRV _http._tcp.users.test". */
  queries: string[];
  /** Resolves once `queries` has `n` entries matching `what` (5 s at most, then rejects). */
  waitFor(what: string, n: number): Promise<void>;
  close(): Promise<void>;
}

/** A resource record as dns2 encodes it (its typings want a Resource instance; the encoder reads fields). */
const rr = (r: Record<string, unknown>) => r as unknown as InstanceType<typeof Packet.Resource>;

const TYPE_NAME: Record<number, string> = {
  [Packet.TYPE.A]: "A",
  [Packet.TYPE.AAAA]: "AAAA",
  [Packet.TYPE.SRV]: "SRV",
};

export async function dnsServer(): Promise<DnsServer> {
  const waiters: { what: string; n: number; done: () => void }[] = [];
  const d: DnsServer = {
    address: "",
    a: new Map(),
    aaaa: new Map(),
    srv: new Map(),
    failing: new Set(),
    silent: false,
    queries: [],
    waitFor(what, n) {
      return new Promise((ok, fail) => {
        const count = () => d.queries.filter((q) => q === what).length;
        if (count() >= n) return ok();
        const timer = setTimeout(
          () => fail(new Error(`waited 5 s for ${n} × ${what}, saw ${count()}`)),
          5000,
        );
        waiters.push({
          what,
          n,
          done: () => {
            clearTimeout(timer);
            ok();
          },
        });
      });
    },
    close: () => new Promise((ok) => server.close(() => ok())),
  };
  const server = dns2.createUDPServer((request, send) => {
    const [q] = request.questions;
    const name = q.name.toLowerCase();
    const type = TYPE_NAME[q.type] ?? String(q.type);
    const asked = `${type} ${name}`;
    d.queries.push(asked);
    for (const w of waiters.filter(
      (x) => x.what === asked && d.queries.filter((y) => y === asked).length >= x.n,
    )) {
      waiters.splice(waiters.indexOf(w), 1);
      w.done();
    }
    if (d.silent) return;
    const res = Packet.createResponseFromRequest(request);
    res.header.aa = 1;
    if (d.failing.has(name)) {
      res.header.rcode = 2; // SERVFAIL
      void send(res);
      return;
    }
    const known = d.a.has(name) || d.aaaa.has(name) || d.srv.has(name);
    if (q.type === Packet.TYPE.A)
      for (const r of d.a.get(name) ?? [])
        res.answers.push(
          rr({ name: q.name, type: Packet.TYPE.A, class: Packet.CLASS.IN, ttl: r.ttl, address: r.address }),
        );
    if (q.type === Packet.TYPE.AAAA)
      for (const r of d.aaaa.get(name) ?? [])
        res.answers.push(
          rr({
            name: q.name,
            type: Packet.TYPE.AAAA,
            class: Packet.CLASS.IN,
            ttl: r.ttl,
            address: r.address,
          }),
        );
    if (q.type === Packet.TYPE.SRV)
      for (const r of d.srv.get(name) ?? [])
        res.answers.push(rr({ name: q.name, type: Packet.TYPE.SRV, class: Packet.CLASS.IN, ttl: 5, ...r }));
    // An unknown name is NXDOMAIN; a known name without records of this type is NOERROR, empty (NODATA).
    if (!known) res.header.rcode = 3;
    void send(res);
  });
  await server.listen(0, "127.0.0.1");
  d.address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return d;
}
