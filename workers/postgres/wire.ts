/**
 * A watch on the bytes a PostgreSQL connection receives, ahead of pg's parser. pg reads
 * every backend message whole into memory before it parses it, and has no message size
 * limit: one `SELECT repeat('x', 200000000)` row is a 200 MB buffer, then a 200 MB
 * string. The watch reads only the 5-byte message headers (type and declared length), so
 * it knows a message's size before its body arrives, and destroys the socket as soon as
 * one message, or the rows of the running statement together, pass their caps. pg then
 * fails the running query with the error given here and the connection is discarded.
 */
import type { Socket } from 'node:net';
import type pg from 'pg';

/** Why a watch destroyed its connection. */
export class WireLimitError extends Error {
  constructor(
    readonly reason: 'message' | 'rows',
    readonly bytes: number,
    readonly cap: number,
    /** The protocol type of the message that passed the cap ('D' a row, 'E' an error, 'N' a notice, ...). */
    readonly messageType: string,
  ) {
    super(reason === 'message' ? `a single message from the server (${bytes} bytes) is larger than the ${cap}-byte cap` : `the rows of the statement passed ${cap} bytes`);
  }
}

const DATA_ROW = 0x44; // 'D'

export class WireWatch {
  /** Largest message accepted, header included. */
  maxMessage = Number.POSITIVE_INFINITY;
  /** DataRow bytes accepted since the last reset, before the connection is destroyed. */
  maxRowBytes = Number.POSITIVE_INFINITY;
  /** DataRow bytes announced since the last reset (counted from headers, before bodies arrive). */
  rowBytes = 0;
  /** Set once the watch destroyed the socket. */
  tripped: WireLimitError | null = null;
  readonly #socket: Socket;
  /** Bytes of the current message body still to skip. */
  #skip = 0;
  readonly #header = Buffer.alloc(5);
  #headerLen = 0;

  constructor(socket: Socket) {
    this.#socket = socket;
    // Prepended, so it runs before pg's parser sees the chunk.
    socket.prependListener('data', (chunk: Buffer) => this.#onData(chunk));
  }

  /** New caps for the next statement; the row count starts again. */
  arm(maxMessage: number, maxRowBytes: number): void {
    this.maxMessage = maxMessage;
    this.maxRowBytes = maxRowBytes;
    this.rowBytes = 0;
  }

  disarm(): void {
    this.arm(Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY);
  }

  #onData(chunk: Buffer): void {
    if (this.tripped) return;
    let off = 0;
    while (off < chunk.length) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - off);
        this.#skip -= n;
        off += n;
        continue;
      }
      const n = Math.min(5 - this.#headerLen, chunk.length - off);
      chunk.copy(this.#header, this.#headerLen, off, off + n);
      this.#headerLen += n;
      off += n;
      if (this.#headerLen < 5) return;
      this.#headerLen = 0;
      const type = this.#header[0]!;
      const length = this.#header.readUInt32BE(1); // includes itself, not the type byte
      const total = length + 1;
      this.#skip = Math.max(0, length - 4);
      if (total > this.maxMessage) return this.#trip(new WireLimitError('message', total, this.maxMessage, String.fromCharCode(type)));
      if (type === DATA_ROW) {
        this.rowBytes += total;
        if (this.rowBytes > this.maxRowBytes) return this.#trip(new WireLimitError('rows', this.rowBytes, this.maxRowBytes, 'D'));
      }
    }
  }

  #trip(e: WireLimitError): void {
    this.tripped = e;
    // pg reports the stream error to the running query (and as the client's 'error' event).
    this.#socket.destroy(e);
  }
}

const watches = new WeakMap<pg.ClientBase, WireWatch>();

/** The client's watch, installed on first use (the socket is the connected one by then). */
export function wireWatch(client: pg.ClientBase): WireWatch | undefined {
  let w = watches.get(client);
  if (w) return w;
  const stream = (client as unknown as { connection?: { stream?: Socket } }).connection?.stream;
  if (!stream || typeof stream.prependListener !== 'function') return undefined;
  w = new WireWatch(stream);
  watches.set(client, w);
  return w;
}
