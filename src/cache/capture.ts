/**
 * Copies a response body as it streams to the client, up to a limit. Past the
 * limit the copy is dropped and the body keeps streaming (SPEC §3: nothing is
 * buffered except a response being stored, bounded by maxEntrySize). The
 * callback gets the whole body only when the upstream stream ended normally;
 * an aborted or failed stream gives `undefined`. `_flush` waits for the
 * callback, so the client's response ends after the entry is stored: a client
 * that asks another instance next finds it there.
 */
import { Transform, type TransformCallback } from "node:stream";

export class Capture extends Transform {
  private chunks: Buffer[] = [];
  private size = 0;
  private overflow = false;
  private settled = false;

  /**
   * `abortOnOverflow`: for a body nobody is waiting for (a background refresh),
   * stop the transfer at the limit instead of streaming the rest.
   */
  constructor(
    private readonly limit: number,
    private readonly done: (body: Buffer | undefined) => Promise<void> | void,
    private readonly abortOnOverflow = false,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (!this.overflow) {
      this.size += chunk.length;
      if (this.size > this.limit) {
        this.overflow = true;
        this.chunks = [];
        if (this.abortOnOverflow) {
          cb(new Error(`body over ${this.limit} bytes: not stored`));
          return;
        }
      } else this.chunks.push(chunk);
    }
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    const body = this.overflow ? undefined : Buffer.concat(this.chunks, this.size);
    this.chunks = [];
    Promise.resolve(this.settle(body)).then(
      () => cb(),
      () => cb(),
    );
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.chunks = [];
    void this.settle(undefined);
    cb(err);
  }

  private settle(body: Buffer | undefined): Promise<void> | void {
    if (this.settled) return;
    this.settled = true;
    return this.done(body);
  }
}
