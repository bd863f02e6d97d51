/**
 * Span export with the OpenTelemetry SDK (issue 14), loaded only when
 * `tracing.otlp` is set (src/tracing.ts is the always-on W3C part).
 *
 * One BasicTracerProvider per generation, batching spans to the collector's
 * OTLP/HTTP endpoint (`<otlp>/v1/traces`); it is shut down (flushing what is
 * left) when the generation's Fastify instance closes. No global provider,
 * context manager or auto-instrumentation: spans are started with their parent
 * context passed explicitly, which costs nothing for requests of other
 * generations and keeps the SDK off every other code path.
 *
 * Per request: a SERVER span, started lazily when first needed (the first
 * upstream attempt, or the response's end for requests answered by the
 * gateway itself) and back-dated to the request's arrival; a CLIENT span per
 * upstream attempt with its target, retry number and outcome, whose context is
 * the traceparent sent to that target. The client's traceparent/tracestate
 * are extracted with the SDK's W3C propagator.
 */
import {
  defaultTextMapGetter,
  defaultTextMapSetter,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
} from "@opentelemetry/sdk-trace-base";
import type { Config } from "./config/schema.js";
import type { RequestState } from "./request-state.js";
import { type RouteTracer, type TraceState, validTraceparent } from "./tracing.js";
import { VERSION } from "./version.js";

type TracingConfig = NonNullable<Config["tracing"]>;

const propagator = new W3CTraceContextPropagator();

export interface Tracing {
  readonly tracer: RouteTracer;
  /** Export what is buffered and stop (the generation closes). */
  shutdown(): Promise<void>;
}

export function startTracing(cfg: TracingConfig): Tracing {
  const exporter = new OTLPTraceExporter({ url: `${cfg.otlp!.replace(/\/+$/, "")}/v1/traces` });
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": cfg.serviceName, "service.version": VERSION }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(cfg.sampleRatio) }),
    spanProcessors: [new BatchSpanProcessor(exporter, { scheduledDelayMillis: 1000 })],
  });
  const tracer = new OtelRouteTracer(provider.getTracer("switchyard", VERSION));
  return { tracer, shutdown: () => provider.shutdown() };
}

interface SpanState extends TraceState {
  span?: Span;
  attempt?: Span;
}

class OtelRouteTracer implements RouteTracer {
  constructor(private readonly tracer: Tracer) {}

  /** The request's SERVER span (made now if this is the first need of it). */
  private server(st: RequestState): SpanState {
    const t = st.trace as SpanState | undefined;
    if (t?.span !== undefined) return t;
    const request = st.request!;
    const parent = propagator.extract(ROOT_CONTEXT, request.headers, defaultTextMapGetter);
    const span = this.tracer.startSpan(
      `${request.method} ${st.route.name}`,
      {
        kind: SpanKind.SERVER,
        // Back-dated to the request's arrival: started lazily, it covers the whole request.
        startTime: Date.now() - (st.reply?.elapsedTime ?? 0),
        attributes: {
          "http.request.method": request.method,
          "url.path": st.path,
          "switchyard.route": st.route.name,
          "client.address": request.ip,
        },
      },
      parent,
    );
    const s: SpanState = { traceId: span.spanContext().traceId, span };
    st.trace = s;
    return s;
  }

  attempt(st: RequestState, headers: Record<string, unknown>): void {
    const t = this.server(st);
    if (t.attempt !== undefined) this.close(t.attempt, undefined, "aborted");
    const target = st.target;
    const span = this.tracer.startSpan(
      `${st.request!.method} ${st.service?.name ?? st.route.name}`,
      {
        kind: SpanKind.CLIENT,
        attributes: {
          "switchyard.service": st.service?.name,
          "switchyard.target": target?.url,
          "server.address": target?.url,
          "switchyard.retry": st.fwd?.attempt ?? 0,
        },
      },
      trace.setSpan(ROOT_CONTEXT, t.span!),
    );
    t.attempt = span;
    // The client's tracestate goes with its valid traceparent only (copied with the other fields).
    if (!validTraceparent(st.request!.headers.traceparent) && headers.tracestate !== undefined)
      delete headers.tracestate;
    propagator.inject(trace.setSpan(ROOT_CONTEXT, span), headers, defaultTextMapSetter);
  }

  attemptDone(st: RequestState, status: number | undefined, error: string | undefined): void {
    const t = st.trace as SpanState | undefined;
    if (t?.attempt === undefined) return;
    this.close(
      t.attempt,
      status,
      error === undefined ? (status! >= 500 ? "http-error" : "ok") : "error",
      error,
    );
    t.attempt = undefined;
  }

  private close(span: Span, status: number | undefined, outcome: string, error?: string): void {
    if (status !== undefined) span.setAttribute("http.response.status_code", status);
    if (error !== undefined) span.setAttribute("error.type", error);
    span.setAttribute("switchyard.outcome", outcome);
    if (outcome !== "ok") span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
  }

  end(st: RequestState, status: number): void {
    if (st.request === undefined) return;
    const t = this.server(st);
    // The client left while an attempt was running (status 499): that attempt was cancelled.
    if (t.attempt !== undefined) {
      this.close(t.attempt, undefined, "aborted");
      t.attempt = undefined;
    }
    const span = t.span!;
    span.setAttribute("http.response.status_code", status);
    if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
  }
}
