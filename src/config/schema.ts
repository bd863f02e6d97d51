/**
 * The one schema of routes.yaml (SPEC §2). It gives both the TypeScript types
 * (`Static<>`) and the JSON Schema that Ajv validates with, and `switchyard
 * schema` prints it for editors. Every field carries a description: it is the
 * user's reference (the README's table is generated from it).
 */
import { type Static, Type as T, type TSchema } from "@sinclair/typebox";

const Duration = (description: string, def?: string) =>
  T.String({ pattern: "^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$", description, ...(def ? { default: def } : {}) });
const Size = (description: string, def?: string) =>
  T.String({ pattern: "^[0-9]+(b|kb|mb|gb)$", description, ...(def ? { default: def } : {}) });
const Strict = <P extends Record<string, TSchema>>(props: P, description: string) =>
  T.Object(props, { additionalProperties: false, description });
const Name = T.String({
  pattern: "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
  description: "A name: letters, digits, _ . -",
});
const Port = T.Integer({ minimum: 0, maximum: 65535, description: "TCP/UDP port (0 = any free port)" });
const Host = (def: string) => T.String({ minLength: 1, default: def, description: "Address to bind" });
const StrMap = (description: string) => T.Record(T.String(), T.String(), { description });

export const Methods = [
  "GET",
  "HEAD",
  "POST",
  "PUT",
  "DELETE",
  "PATCH",
  "OPTIONS",
  "TRACE",
  "PROPFIND",
  "PROPPATCH",
  "MKCOL",
  "COPY",
  "MOVE",
  "LOCK",
  "UNLOCK",
  "SEARCH",
  "REPORT",
  "MKCALENDAR",
  // Issue 12: every other method Node's HTTP parser accepts (http.METHODS; CONNECT is a tunnel,
  // not a request; QUERY is listed there but refused by Node 20's parser), so extension methods
  // are routed and forwarded when a route's methods allow them (no methods = any).
  "ACL",
  "BIND",
  "CHECKOUT",
  "LINK",
  "M-SEARCH",
  "MERGE",
  "MKACTIVITY",
  "NOTIFY",
  "PURGE",
  "REBIND",
  "SOURCE",
  "SUBSCRIBE",
  "UNBIND",
  "UNLINK",
  "UNSUBSCRIBE",
] as const;
const Method = T.Union(
  Methods.map((m) => T.Literal(m)),
  { description: "HTTP method, upper-case" },
);

const Tls = Strict(
  {
    cert: T.String({ description: "PEM certificate file (chain) for this listener" }),
    key: T.String({ description: "PEM private key file" }),
    sni: T.Optional(
      T.Array(
        Strict(
          {
            hosts: T.Array(T.String(), { minItems: 1, description: "Server names, exact or *.wildcard" }),
            cert: T.String({ description: "PEM certificate file for these names" }),
            key: T.String({ description: "PEM private key file for these names" }),
          },
          "A certificate chosen by the TLS ClientHello's server name",
        ),
        { description: "More certificates, chosen by SNI" },
      ),
    ),
  },
  "TLS termination",
);

const Listener = Strict(
  {
    port: Port,
    host: Host("0.0.0.0"),
    tls: T.Optional(Tls),
    http2: T.Boolean({
      default: false,
      description:
        "Serve HTTP/2: with tls, negotiated by ALPN (HTTP/1.1 still served on the port); without tls, h2c by prior knowledge only",
    }),
    timeouts: T.Optional(
      Strict(
        {
          headers: Duration("All request headers must arrive within this", "10s"),
          request: Duration("The whole request (headers and body) must arrive within this", "60s"),
          idle: Duration("Keep-alive idle time between requests", "60s"),
        },
        "Limits against slow or idle clients",
      ),
    ),
    maxConnections: T.Integer({
      minimum: 1,
      default: 10000,
      description:
        "Open client connections this listener keeps at once (idle keep-alive ones included); beyond it new connections are closed on accept, so a flood of idle sockets cannot exhaust memory",
    }),
    maxHeaders: T.Integer({
      minimum: 1,
      maximum: 2000,
      default: 100,
      description:
        "Request header fields allowed (as Envoy and HAProxy count them); more is 431 SY_HEADERS_TOO_LARGE, never silently dropped",
    }),
    serverTiming: T.Boolean({
      default: false,
      description: "Add a Server-Timing header (reveals internals)",
    }),
  },
  "An L7 (HTTP) listener",
);

const Admin = Strict(
  {
    port: Port,
    host: Host("127.0.0.1"),
    token: T.Optional(T.String({ description: "When non-empty, required as Authorization: Bearer <token>" })),
  },
  "The admin listener (health, metrics, upstreams, purge)",
);

const Store = Strict(
  {
    type: T.Union([T.Literal("memory"), T.Literal("redis")], {
      default: "memory",
      description: "memory (embedded) or redis (shared by every worker and instance)",
    }),
    url: T.Optional(T.String({ description: "redis://host:port/db for type redis" })),
    cluster: T.Optional(
      T.Array(T.String(), {
        minItems: 1,
        description:
          "Redis Cluster instead of url: some of its nodes as redis://host:port (the rest are discovered; credentials from the first). One route's rate-limit counters share a slot (the route name is their hash tag)",
      }),
    ),
    sentinels: T.Optional(
      T.Array(T.String(), {
        minItems: 1,
        description:
          "Redis Sentinel instead of url: sentinels as redis://host:port (credentials in the first are used for the sentinels and the primary); the store follows the primary through failovers. Needs name",
      }),
    ),
    name: T.Optional(T.String({ minLength: 1, description: "The Sentinel master name (with sentinels)" })),
    prefix: T.String({
      default: "sy:",
      description:
        "Key prefix in Redis (keep braces out of it on a Cluster: a {hash tag} here puts every key in one slot)",
    }),
    onError: T.Union([T.Literal("local"), T.Literal("allow"), T.Literal("deny")], {
      default: "local",
      description: "When Redis is unreachable or slow: local counters/cache, allow, or deny (503)",
    }),
    timeout: Duration(
      "A Redis command not answered within this counts as Redis failing (onError decides); raise it only for a Redis that is far away or busy",
      "50ms",
    ),
  },
  "Shared state for rate limits and the response cache",
);

const Tracing = Strict(
  {
    otlp: T.Optional(
      T.String({
        description:
          "OTLP/HTTP collector base URL (http://collector:4318): spans are exported to <otlp>/v1/traces with the OpenTelemetry SDK (a server span per request, a client span per upstream attempt). Without it nothing is recorded; traceparent is still forwarded, and created when absent",
      }),
    ),
    sampleRatio: T.Number({
      minimum: 0,
      maximum: 1,
      default: 1,
      description:
        "Share of new traces recorded (0..1); a request with a traceparent follows its sampled flag",
    }),
    serviceName: T.String({ default: "switchyard", description: "service.name of the exported spans" }),
  },
  "W3C trace context (traceparent/tracestate) and OpenTelemetry span export",
);

const Verifier = Strict(
  {
    secret: T.Optional(T.String({ minLength: 1, description: "HMAC secret (HS256/384/512)" })),
    publicKey: T.Optional(T.String({ description: "PEM public key, or a path to one (RS*/ES*/PS*/EdDSA)" })),
    jwksUri: T.Optional(T.String({ description: "JWKS endpoint; keys cached by (issuer, kid)" })),
    algorithms: T.Optional(
      T.Array(
        T.Union(
          [
            "HS256",
            "HS384",
            "HS512",
            "RS256",
            "RS384",
            "RS512",
            "PS256",
            "PS384",
            "PS512",
            "ES256",
            "ES384",
            "ES512",
            "EdDSA",
          ].map((a) => T.Literal(a)),
        ),
        { minItems: 1, description: "Accepted algorithms (pinned; 'none' is never accepted)" },
      ),
    ),
    issuer: T.Optional(T.String({ description: "Required iss claim" })),
    audience: T.Optional(
      T.Union([T.String(), T.Array(T.String())], { description: "Required aud claim (any of)" }),
    ),
    clockTolerance: Duration("Leeway for exp and nbf", "0s"),
  },
  "A named JWT verifier, referenced by routes' auth.jwt",
);

const TargetEntry = T.Union(
  [
    T.String({ description: "Target URL: http(s)://host:port, tcp://host:port or udp://host:port" }),
    Strict(
      {
        url: T.String({ description: "Target URL" }),
        weight: T.Optional(
          T.Integer({ minimum: 1, maximum: 1000, description: "Relative share (default 1)" }),
        ),
      },
      "A weighted target",
    ),
    Strict(
      {
        srv: T.String({
          pattern: "^_[A-Za-z0-9-]+\\._(tcp|udp)\\.[A-Za-z0-9.-]+$",
          description:
            "DNS SRV name (_service._proto.name, e.g. _http._tcp.users.default.svc.cluster.local): each record's host and port is a target. Needs discovery: dns",
        }),
        scheme: T.Optional(
          T.Union([T.Literal("http"), T.Literal("https"), T.Literal("tcp"), T.Literal("udp")], {
            description:
              "Scheme of the targets (default from the name: _https → https, _http → http, _udp → udp, else tcp)",
          }),
        ),
        weight: T.Optional(
          T.Integer({ minimum: 1, maximum: 1000, description: "Relative share of each target (default 1)" }),
        ),
      },
      "Targets from a DNS SRV record (discovery: dns)",
    ),
  ],
  { description: "A target URL, { url, weight }, or { srv } (discovery: dns)" },
);

export const BalancerNames = [
  "round-robin",
  "least-connections",
  "p2c",
  "random",
  "ip-hash",
  "consistent-hash",
] as const;

const Service = Strict(
  {
    targets: T.Array(TargetEntry, {
      minItems: 1,
      description:
        "The service's endpoints: URLs, { url, weight }, or (with discovery: dns) { srv: _service._proto.name, scheme, weight }",
    }),
    balancer: T.Union(
      BalancerNames.map((b) => T.Literal(b)),
      { default: "round-robin", description: "Load-balancing algorithm (SPEC §4)" },
    ),
    hash: T.Optional(
      Strict(
        {
          on: T.Union(
            [
              T.Literal("ip"),
              T.Literal("header"),
              T.Literal("cookie"),
              T.Literal("path"),
              T.Literal("query"),
            ],
            { description: "What the consistent-hash key is taken from" },
          ),
          name: T.Optional(T.String({ description: "Header, cookie or query parameter name" })),
        },
        "Key for consistent-hash",
      ),
    ),
    discovery: T.Optional(
      T.Literal("dns", {
        description:
          "dns: each target's host name resolves to every A/AAAA address, each its own target with its own health, re-resolved on the record's TTL (at most dnsRefresh); addresses that disappear drain, new ones join (after their first health probe, with slowStart). A failing resolver keeps the last good addresses. Without it a name is resolved per connection by the system",
      }),
    ),
    dnsRefresh: T.Optional(
      Duration("discovery: dns: longest time between resolutions, whatever the records' TTL (default 30s)"),
    ),
    protocol: T.Optional(
      T.Union([T.Literal("http1"), T.Literal("h2"), T.Literal("h2c")], {
        description:
          "How L7 requests reach the targets: http1 (default), h2 (HTTP/2 over TLS, https:// targets, ALPN h2 required) or h2c (HTTP/2 in clear, http:// targets, prior knowledge); HTTP/2 carries gRPC and its trailers",
      }),
    ),
    tls: T.Optional(
      Strict(
        {
          ca: T.Optional(
            T.String({
              description: "PEM CA bundle file the targets' certificates must chain to (default: Node's CAs)",
            }),
          ),
          cert: T.Optional(T.String({ description: "PEM client certificate file (mTLS); needs key" })),
          key: T.Optional(T.String({ description: "PEM private key file of the client certificate" })),
          servername: T.Optional(
            T.String({
              description:
                "Name sent as SNI and checked against the certificate (default: the target's host)",
            }),
          ),
          insecureSkipVerify: T.Boolean({
            default: false,
            description: "Do not verify the targets' certificates (testing only; --check warns)",
          }),
        },
        "TLS to https:// (and h2) targets: the CA to verify them against, a client certificate for mTLS",
      ),
    ),
    sticky: T.Optional(
      Strict(
        {
          cookie: T.String({
            pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
            description: "Affinity cookie name (an RFC 6265 token); one service per name",
          }),
          ttl: Duration(
            "Cookie lifetime; re-issued once half of it has passed, so an active session keeps its target",
            "1h",
          ),
          secret: T.Optional(
            T.String({
              minLength: 16,
              description: `HMAC key signing the cookie (at least 16 characters, e.g. \${STICKY_SECRET}); give every replica the same one. Absent: a random key per gateway process tree, so cookies do not survive a restart or hold across replicas`,
            }),
          ),
        },
        "Cookie affinity (L7 only): the first answer sets an HMAC-signed, opaque cookie naming its target (HttpOnly, SameSite=Lax, Secure on TLS); later requests go to that target while it is available, else the balancer picks and the cookie is replaced",
      ),
    ),
    healthCheck: T.Optional(
      Strict(
        {
          path: T.String({
            default: "/health",
            description: "HTTP path probed (tcp services: connect check)",
          }),
          interval: Duration("Time between probes", "5s"),
          timeout: Duration("Probe timeout", "1s"),
          healthyThreshold: T.Integer({ minimum: 1, default: 2, description: "Successes to become healthy" }),
          unhealthyThreshold: T.Integer({
            minimum: 1,
            default: 3,
            description: "Failures to become unhealthy",
          }),
          expectStatus: T.String({
            pattern: "^[1-5][0-9]{2}(-[1-5][0-9]{2})?$",
            default: "200-399",
            description: "Healthy status code or range",
          }),
        },
        "Active health checks",
      ),
    ),
    outlierDetection: T.Optional(
      Strict(
        {
          consecutiveFailures: T.Integer({
            minimum: 1,
            default: 5,
            description: "Failures in a row to eject",
          }),
          ejectionTime: Duration("Base ejection time (grows with repeated ejections)", "30s"),
          maxEjectionPercent: T.Integer({
            minimum: 0,
            maximum: 100,
            default: 50,
            description: "Never eject more than this share of targets",
          }),
        },
        "Passive checks from live traffic",
      ),
    ),
    retries: T.Optional(
      Strict(
        {
          attempts: T.Integer({
            minimum: 0,
            maximum: 10,
            default: 2,
            description: "Retries after the first try",
          }),
          on: T.Array(
            // YAML reads an unquoted 502 as a number: both spellings are accepted.
            T.Union([
              ...["connect-failure", "reset", "timeout", "502", "503", "504"].map((k) => T.Literal(k)),
              ...[502, 503, 504].map((k) => T.Literal(k)),
            ]),
            { default: ["connect-failure", "reset", "502", "503", "504"], description: "Retry conditions" },
          ),
          methods: T.Array(Method, {
            default: ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"],
            description: "Methods that may be retried",
          }),
          idempotencyKey: T.Boolean({
            default: true,
            description: "Also retry any method when the request has an Idempotency-Key header",
          }),
          budget: T.String({
            pattern: "^[0-9]{1,3}%$",
            default: "20%",
            description: "Retries in flight ≤ this share of requests in flight (min 3)",
          }),
          backoff: T.Optional(
            Strict(
              { base: Duration("First backoff", "25ms"), max: Duration("Largest backoff", "250ms") },
              "Jittered exponential backoff",
            ),
          ),
        },
        "Retry policy",
      ),
    ),
    timeouts: T.Optional(
      Strict(
        {
          connect: Duration("Connect timeout", "2s"),
          request: Duration("Time to the response headers (and between body chunks)", "30s"),
          idle: Duration("Idle keep-alive connection lifetime", "60s"),
        },
        "Upstream timeouts",
      ),
    ),
    maxConnectionsPerTarget: T.Optional(
      T.Integer({ minimum: 1, description: "Circuit breaker: in-flight cap per target, then 503" }),
    ),
    slowStart: T.Optional(Duration("Ramp a newly healthy target's share over this")),
  },
  "An upstream cluster, shared by L7 and L4",
);

const HeaderMatch = T.Union(
  [
    T.String({ description: "Exact value" }),
    Strict({ regex: T.String({ description: "Regular expression" }) }, "Value matches a regex"),
    Strict({ present: T.Boolean({ description: "Header present (true) or absent (false)" }) }, "Presence"),
  ],
  { description: "exact string, { regex } or { present }" },
);

const Match = Strict(
  {
    path: T.String({
      default: "/",
      pattern: "^[/^]",
      description: "Path (prefix by whole segments by default)",
    }),
    pathType: T.Union([T.Literal("prefix"), T.Literal("exact"), T.Literal("regex"), T.Literal("template")], {
      default: "prefix",
      description: "prefix | exact | regex | template (/api/users/:id)",
    }),
    methods: T.Optional(T.Array(Method, { minItems: 1, description: "Methods matched (default any)" })),
    hosts: T.Optional(T.Array(T.String(), { minItems: 1, description: "Hosts, exact or *.wildcard" })),
    headers: T.Optional(
      T.Record(T.String(), HeaderMatch, { description: "Header conditions, all required" }),
    ),
    query: T.Optional(StrMap("Query parameters, exact values")),
    cookies: T.Optional(StrMap("Cookies, exact values")),
  },
  "What the route matches; all conditions must hold",
);

const HeaderEdit = Strict(
  {
    set: T.Optional(StrMap("Headers set (replacing any value)")),
    remove: T.Optional(T.Array(T.String(), { description: "Headers removed" })),
  },
  "Header edits",
);

const Route = Strict(
  {
    name: Name,
    match: T.Optional(Match),
    service: T.Optional(T.String({ description: "The service that serves this route" })),
    split: T.Optional(
      T.Array(
        Strict(
          {
            service: T.String({ description: "Service name" }),
            weight: T.Integer({ minimum: 0, description: "Relative share" }),
          },
          "A weighted share",
        ),
        { minItems: 1, description: "Weighted split across services (canary)" },
      ),
    ),
    respond: T.Optional(
      Strict(
        {
          status: T.Integer({ minimum: 100, maximum: 599, description: "Status code" }),
          headers: T.Optional(StrMap("Response headers")),
          body: T.Optional(T.String({ description: "Response body" })),
        },
        "Direct response, no upstream",
      ),
    ),
    rewrite: T.Optional(
      Strict(
        {
          stripPrefix: T.Optional(
            T.String({ pattern: "^/", description: "Remove this prefix before forwarding" }),
          ),
          path: T.Optional(
            T.String({ pattern: "^/", description: "Upstream path template: {rest}, {param}" }),
          ),
          host: T.Optional(T.String({ description: "Host header sent upstream (default: the client's)" })),
        },
        "Rewrites before forwarding",
      ),
    ),
    auth: T.Optional(
      Strict(
        {
          jwt: T.Union([T.String(), T.Literal(false)], { description: "Verifier name, or false for none" }),
          scopes: T.Optional(T.Array(T.String(), { description: "Required scopes (scope or scp claim)" })),
          claims: T.Optional(
            T.Record(T.String(), T.Union([T.String(), T.Number(), T.Boolean()]), {
              description: "Exact claim values required",
            }),
          ),
          forwardToken: T.Boolean({
            default: true,
            description: "Keep Authorization on the upstream request",
          }),
        },
        "JWT authentication at the edge",
      ),
    ),
    rateLimit: T.Optional(
      Strict(
        {
          max: T.Integer({ minimum: 1, description: "Requests allowed per window" }),
          window: Duration("Window length", "1m"),
          by: T.String({
            pattern: "^(ip|route|jwt:.+|header:.+)$",
            default: "ip",
            description: "ip | jwt:<claim> | header:<name> | route",
          }),
        },
        "Rate limit",
      ),
    ),
    cache: T.Optional(
      Strict(
        {
          ttl: Duration("Freshness when the upstream gives none, and the upper bound", "30s"),
          methods: T.Array(T.Union([T.Literal("GET"), T.Literal("HEAD")]), {
            default: ["GET", "HEAD"],
            description:
              "Cached methods; [] stores nothing and only invalidates (a write-only route). On every cached route a 2xx/3xx answer to an unsafe method drops the stored responses of its URI and its same-origin Location / Content-Location (RFC 9111 §4.4)",
          }),
          vary: T.Optional(T.Array(T.String(), { description: "Request headers added to the key" })),
          staleWhileRevalidate: T.Optional(
            Duration(
              "Serve stale while refreshing; an upstream Cache-Control stale-while-revalidate=N replaces it for that response (RFC 5861)",
            ),
          ),
          staleIfError: T.Optional(
            Duration(
              "Serve stale when the upstream fails (5xx, reset, unreachable); an upstream Cache-Control stale-if-error=N replaces it for that response (RFC 5861)",
            ),
          ),
          coalesce: T.Boolean({ default: true, description: "One upstream request for concurrent misses" }),
          maxEntrySize: Size("Largest response stored", "1mb"),
          targeted: T.Array(T.Union([T.Literal("cdn-cache-control"), T.Literal("surrogate-control")]), {
            default: ["cdn-cache-control"],
            description:
              "Targeted fields (RFC 9213) that govern this cache instead of Cache-Control and Expires, first present wins; surrogate-control is read for max-age and no-store. Cache-Control private/no-store still keep a response out",
          }),
          obeyClientCacheControl: T.Boolean({
            default: false,
            description:
              "Obey the client's Cache-Control no-cache, max-age, min-fresh, max-stale and only-if-cached (504 SY_NOT_CACHED when nothing stored will do); off: a client cannot force misses onto the upstream",
          }),
          passTargeted: T.Boolean({
            default: false,
            description: "Pass the targeted fields on to clients (by default they stop at the gateway)",
          }),
        },
        "Response cache",
      ),
    ),
    // Issue 12: @fastify/caching in the route's scope (plugins/cache-control.ts).
    cacheControl: T.Optional(
      Strict(
        {
          privacy: T.Union([T.Literal("public"), T.Literal("private"), T.Literal("no-cache")], {
            description: "Cache-Control given to 2xx responses that come without one (errors get no-store)",
          }),
          expiresIn: T.Optional(
            T.Integer({
              minimum: 0,
              description: "max-age in seconds (public, private); also Expires on respond: answers",
            }),
          ),
          serverExpiresIn: T.Optional(
            T.Integer({ minimum: 0, description: "s-maxage in seconds for shared caches (public only)" }),
          ),
        },
        "Cache-Control for clients and downstream CDNs on responses without one; respond: answers with status 200 also get an ETag and 304 on If-None-Match",
      ),
    ),
    transform: T.Optional(
      Strict(
        {
          request: T.Optional(
            Strict(
              {
                headers: T.Optional(HeaderEdit),
                fromClaims: T.Optional(StrMap("Request headers set from JWT claims (client copies removed)")),
                query: T.Optional(
                  Strict(
                    {
                      set: T.Optional(StrMap("Query parameters set")),
                      remove: T.Optional(T.Array(T.String(), { description: "Query parameters removed" })),
                    },
                    "Query edits",
                  ),
                ),
              },
              "Request transforms",
            ),
          ),
          response: T.Optional(Strict({ headers: T.Optional(HeaderEdit) }, "Response transforms")),
        },
        "Header and query transforms",
      ),
    ),
    timeout: T.Optional(Duration("Overrides the service's request timeout")),
    bodyLimit: Size("Largest request body (413 beyond)", "1mb"),
    websocket: T.Boolean({ default: false, description: "Allow Upgrade: websocket on this route" }),
    cors: T.Optional(
      Strict(
        {
          origins: T.Array(T.String(), { minItems: 1, description: "Allowed origins ('*' for any)" }),
          credentials: T.Boolean({ default: false, description: "Allow credentials" }),
          methods: T.Optional(T.Array(Method, { description: "Allowed methods" })),
          headers: T.Optional(T.Array(T.String(), { description: "Allowed request headers" })),
          maxAge: T.Optional(Duration("Preflight cache time")),
        },
        "CORS, preflight answered at the edge",
      ),
    ),
    // Issue 13: imported and validated at load (src/config/plugins.ts), registered in this route's scope.
    plugins: T.Optional(
      T.Array(
        Strict(
          {
            use: T.String({
              minLength: 1,
              description: "Module: a path relative to routes.yaml (.js, .mjs) or an installed package name",
            }),
            options: T.Optional(
              T.Record(T.String(), T.Unknown({ description: "Any value the plugin's schema allows" }), {
                description: "Passed to the plugin; checked against the module's exported `schema`",
              }),
            ),
          },
          "A Fastify plugin (the module's default export)",
        ),
        {
          description:
            "Your own Fastify plugins, in this route's scope, after the built-in policies and before the cache and forwarding",
        },
      ),
    ),
  },
  "An L7 route: first match wins, in file order",
);

const L4Listen = Strict({ port: Port, host: Host("0.0.0.0") }, "Where to listen");

// Issue 16: the same listener either proxied by Node or translated by the kernel (README "L4 in the kernel").
// Optional in the type (the loader fills both defaults in) so listener objects built in code stay valid.
const L4Mode = T.Union([T.Literal("proxy"), T.Literal("nat")], {
  default: "proxy",
  description:
    "proxy: Node relays the bytes; nat: the kernel rewrites the addresses (nftables DNAT; Linux, nft, CAP_NET_ADMIN)",
});
const Snat = T.Boolean({
  default: true,
  description:
    "nat mode: masquerade, so targets reply through the gateway; false keeps the client's address (targets must route back through the gateway)",
});

const TcpListener = Strict(
  {
    name: Name,
    listen: L4Listen,
    service: T.Optional(T.String({ description: "The tcp:// service" })),
    sni: T.Optional(
      T.Record(T.String(), T.String(), { description: "TLS passthrough: server name → service" }),
    ),
    default: T.Optional(T.String({ description: "Service for no SNI or no match; absent = close" })),
    connectTimeout: Duration("Dial timeout per target", "2s"),
    idleTimeout: Duration("Close after this long without bytes either way", "1h"),
    maxConnections: T.Integer({ minimum: 1, default: 10000, description: "Refuse beyond this" }),
    proxyProtocol: T.Optional(
      T.Union([T.Literal("v1"), T.Literal("v2")], { description: "Send a PROXY header" }),
    ),
    acceptProxyProtocol: T.Boolean({ default: false, description: "Read a PROXY header from the client" }),
    mode: T.Optional(L4Mode),
    snat: T.Optional(Snat),
  },
  "An L4 TCP listener",
);

const UdpListener = Strict(
  {
    name: Name,
    listen: L4Listen,
    service: T.String({ description: "The udp:// service" }),
    sessionTimeout: Duration("A client address keeps its target while active", "30s"),
    maxSessions: T.Integer({ minimum: 1, default: 10000, description: "Bound on the session table" }),
    mode: T.Optional(L4Mode),
    snat: T.Optional(Snat),
  },
  "An L4 UDP listener",
);

export const ConfigSchema = T.Object(
  {
    $schema: T.Optional(T.String({ description: "Editor hint, ignored" })),
    version: T.Literal(1, { description: "Config format version" }),
    listen: T.Array(Listener, { default: [], description: "L7 listeners" }),
    admin: T.Optional(Admin),
    store: T.Optional(Store),
    trustProxy: T.Union([T.Boolean(), T.Array(T.String())], {
      default: false,
      description: "Whose X-Forwarded-For to believe: true, false or a list of CIDRs",
    }),
    watch: T.Boolean({ default: false, description: "Reload when the file changes" }),
    shutdownTimeout: Duration("Drain time on SIGTERM/SIGINT", "30s"),
    dnsServers: T.Optional(
      T.Array(
        T.String({
          pattern: "^(\\[[0-9A-Fa-f:.]+\\]|[0-9.]+|[0-9A-Fa-f:]+)(:[0-9]{1,5})?$",
          description: "A resolver address: 10.0.0.10, 10.0.0.10:53 or [fd00::10]:53",
        }),
        {
          minItems: 1,
          description:
            "Resolvers for services with discovery: dns, tried in order (default: the system's, /etc/resolv.conf)",
        },
      ),
    ),
    tracing: T.Optional(Tracing),
    jwt: T.Record(T.String(), Verifier, { default: {}, description: "Named JWT verifiers" }),
    services: T.Record(T.String(), Service, { default: {}, description: "Upstream clusters" }),
    routes: T.Array(Route, { default: [], description: "L7 routes, first match wins" }),
    tcp: T.Array(TcpListener, { default: [], description: "L4 TCP listeners" }),
    udp: T.Array(UdpListener, { default: [], description: "L4 UDP listeners" }),
  },
  { additionalProperties: false, description: "Switchyard routes.yaml" },
);

export type Config = Static<typeof ConfigSchema>;
export type ListenerConfig = Static<typeof Listener>;
export type ServiceConfig = Static<typeof Service>;
export type RouteConfig = Static<typeof Route>;
export type TcpListenerConfig = Static<typeof TcpListener>;
export type UdpListenerConfig = Static<typeof UdpListener>;
export type VerifierConfig = Static<typeof Verifier>;

/**
 * The schema as editors should see it: keys that have a default are optional
 * to write (Ajv fills them in, so they are "required" only after loading).
 */
export function editorSchema(): unknown {
  const strip = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(strip);
    if (node === null || typeof node !== "object") return node;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node)) out[k] = strip(v);
    const props = out.properties as Record<string, { default?: unknown }> | undefined;
    if (Array.isArray(out.required) && props) {
      out.required = (out.required as string[]).filter((k) => props[k]?.default === undefined);
      if ((out.required as string[]).length === 0) delete out.required;
    }
    return out;
  };
  return {
    $schema: "http://json-schema.org/draft-07/schema#",
    title: "Switchyard routes.yaml",
    ...(strip(ConfigSchema) as object),
  };
}
