/**
 * Range requests answered from a complete stored 200 (RFC 9110 §14, issue 12).
 * One satisfiable byte range is a 206 with Content-Range (first-last,
 * open-ended and suffix forms); several ranges get the full 200 (allowed by
 * §14.2: a server may ignore Range, and a multipart/byteranges body is rarely
 * worth it); none satisfiable is a 416 whose Content-Range gives the length (`bytes *` then `/length`).
 * A Range that is not bytes, or not valid, is ignored (§14.2). If-Range
 * (§13.1.5) lets the range through only when it names the stored response by
 * a strong validator: its ETag (strong, compared strongly) or its exact
 * Last-Modified date; otherwise the full 200 is the answer.
 *
 * Parsing is the `range-parser` package (the one `send` and Express use).
 */
import type { IncomingHttpHeaders } from "node:http";
import parseRange from "range-parser";
import type { Entry, Headers } from "./entry.js";

export type Ranged =
  | { status: 206; headers: Headers; body: Buffer }
  | { status: 416; headers: Headers; body: Buffer };

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** Whether If-Range names the stored response (strong comparison only, §13.1.5). */
function ifRangeMatches(ifRange: string, entry: Entry): boolean {
  const v = ifRange.trim();
  if (v.startsWith('"') || v.startsWith("W/")) {
    const etag = one(entry.headers.etag);
    return !v.startsWith("W/") && etag !== undefined && !etag.startsWith("W/") && etag === v;
  }
  const lm = one(entry.headers["last-modified"]);
  return lm !== undefined && Number.isFinite(Date.parse(v)) && Date.parse(v) === Date.parse(lm);
}

/** The partial answer for `req` from `entry`, or undefined when the full stored response is the answer. */
export function rangeAnswer(
  req: IncomingHttpHeaders,
  method: string | undefined,
  entry: Entry,
): Ranged | undefined {
  const range = one(req.range);
  if (range === undefined || method !== "GET" || entry.status !== 200) return undefined;
  const ifRange = one(req["if-range"]);
  if (ifRange !== undefined && !ifRangeMatches(ifRange, entry)) return undefined;
  const size = entry.body.length;
  const ranges = parseRange(size, range);
  if (ranges === -2 || (ranges !== -1 && ranges.type !== "bytes")) return undefined;
  if (ranges === -1)
    return { status: 416, headers: { "content-range": `bytes */${size}` }, body: Buffer.alloc(0) };
  if (ranges.length !== 1) return undefined;
  const { start, end } = ranges[0];
  return {
    status: 206,
    headers: { "content-range": `bytes ${start}-${end}/${size}`, "content-length": String(end - start + 1) },
    body: entry.body.subarray(start, end + 1),
  };
}
