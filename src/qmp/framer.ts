/**
 * Splits a QMP byte stream into JSON messages on object boundaries, not on newlines
 * (toolchain.md §5 rule 2): brace/bracket depth, string- and escape-aware, for both of QEMU's
 * quote characters. Whitespace between messages is skipped; chunks may split a message
 * anywhere, down to one byte.
 *
 * Bounds, with QEMU's wording (qobject/json-streamer.c):
 * - a message longer than `maxMessageBytes` -> "JSON token size limit exceeded";
 * - more than `maxDepth` open braces and brackets -> "JSON nesting depth limit exceeded".
 * Either way the rest of that message is skipped while its depth is still tracked, so the next
 * message parses cleanly (QEMU instead restarts mid-message and reports every fragment).
 *
 * A byte that can never occur in UTF-8 (0x00, 0xC0, 0xC1, 0xF5..0xFF) resets the framer
 * wherever it appears: QEMU's lexer does the same, and clients send 0xFF to resynchronise.
 */
import { JSON_MAX_NESTING } from './json-parser.ts';

export interface JsonFramerSink {
  /** One complete top-level JSON text (object, array or scalar), not yet parsed. */
  message(bytes: Buffer): void;
  /** A framing-level error, with QEMU's description; the stream goes on after it. */
  error(desc: string): void;
}

export interface JsonFramerLimits {
  maxMessageBytes: number;
  maxDepth: number;
}

export const DEFAULT_MAX_MESSAGE_BYTES = 1 << 20;

const SIZE_LIMIT = 'JSON token size limit exceeded';
const DEPTH_LIMIT = 'JSON nesting depth limit exceeded';
const RESET_BYTE = "JSON parse error, stray '\ufffd'";

/** What ends a bare top-level token (a number or keyword): whitespace, structure, quotes. */
function isDelimiter(b: number): boolean {
  return (
    b === 0x20 ||
    b === 0x09 ||
    b === 0x0a ||
    b === 0x0d ||
    b === 0x7b ||
    b === 0x7d ||
    b === 0x5b ||
    b === 0x5d ||
    b === 0x2c ||
    b === 0x3a ||
    b === 0x22 ||
    b === 0x27
  );
}

function isResetByte(b: number): boolean {
  return b === 0x00 || b === 0xc0 || b === 0xc1 || b >= 0xf5;
}

export class JsonFramer {
  readonly #sink: JsonFramerSink;
  readonly #maxBytes: number;
  readonly #maxDepth: number;

  #depth = 0;
  /** The quote byte of the string we are in, or 0. */
  #quote = 0;
  #escape = false;
  /** Inside a bare top-level token such as `123` or `null`. */
  #bare = false;
  /** Dropping the rest of a message that broke a limit. */
  #skipping = false;
  /** Tails of earlier chunks holding the start of the current message. */
  #parts: Buffer[] = [];
  #partBytes = 0;

  constructor(sink: JsonFramerSink, limits: Partial<JsonFramerLimits> = {}) {
    this.#sink = sink;
    this.#maxBytes = limits.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.#maxDepth = limits.maxDepth ?? JSON_MAX_NESTING;
    if (!(this.#maxBytes >= 1) || !(this.#maxDepth >= 1)) {
      throw new RangeError(`JsonFramer: limits must be positive (got ${JSON.stringify(limits)})`);
    }
  }

  /** True between messages: nothing buffered, no string or container open. */
  get idle(): boolean {
    return this.#depth === 0 && this.#quote === 0 && !this.#bare && this.#partBytes === 0;
  }

  /**
   * Feeds one chunk. The framer keeps references to the chunk's tail when a message spans
   * chunks, so the caller must not reuse the buffer (socket chunks are never reused).
   */
  push(chunk: Buffer): void {
    // Offset in `chunk` where the current message starts; 0 when it began in an earlier chunk.
    let start = this.#inMessage() ? 0 : -1;
    const n = chunk.length;
    for (let i = 0; i < n; i++) {
      const b = chunk[i]!;
      if (isResetByte(b)) {
        this.#reset();
        start = -1;
        this.#sink.error(RESET_BYTE);
        continue;
      }
      if (this.#quote !== 0) {
        if (this.#escape) this.#escape = false;
        else if (b === 0x5c) this.#escape = true;
        else if (b === this.#quote) {
          this.#quote = 0;
          if (this.#depth === 0) {
            this.#complete(chunk, start, i + 1);
            start = -1;
          }
        }
        continue;
      }
      if (this.#bare) {
        if (!isDelimiter(b)) continue;
        this.#bare = false;
        this.#complete(chunk, start, i);
        start = -1;
        // fall through: `b` also starts or separates what follows
      }
      if (b === 0x22 || b === 0x27) {
        this.#quote = b;
        if (this.#depth === 0) start = i;
      } else if (b === 0x7b || b === 0x5b) {
        if (this.#depth === 0) start = i;
        if (++this.#depth > this.#maxDepth && !this.#skipping) {
          this.#startSkipping(DEPTH_LIMIT);
        }
      } else if (b === 0x7d || b === 0x5d) {
        if (this.#depth === 0) {
          // A stray closer: a one-byte message, which the parser rejects as QEMU does.
          this.#complete(chunk, i, i + 1);
        } else if (--this.#depth === 0) {
          this.#complete(chunk, start, i + 1);
          start = -1;
        }
      } else if (this.#depth === 0) {
        if (b === 0x2c || b === 0x3a) {
          this.#complete(chunk, i, i + 1);
        } else if (b !== 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d) {
          this.#bare = true;
          start = i;
        }
      }
    }
    if (start >= 0 && !this.#skipping) {
      const tail = chunk.subarray(start);
      if (this.#partBytes + tail.length > this.#maxBytes) {
        this.#startSkipping(SIZE_LIMIT);
      } else if (tail.length > 0) {
        this.#parts.push(tail);
        this.#partBytes += tail.length;
      }
    }
  }

  #inMessage(): boolean {
    return this.#depth > 0 || this.#quote !== 0 || this.#bare;
  }

  #startSkipping(desc: string): void {
    this.#skipping = true;
    this.#parts = [];
    this.#partBytes = 0;
    this.#sink.error(desc);
  }

  #reset(): void {
    this.#depth = 0;
    this.#quote = 0;
    this.#escape = false;
    this.#bare = false;
    this.#skipping = false;
    this.#parts = [];
    this.#partBytes = 0;
  }

  /** The message ends at `end` (exclusive) in `chunk`; it started at `start`, or earlier. */
  #complete(chunk: Buffer, start: number, end: number): void {
    if (this.#skipping) {
      this.#skipping = false;
      return;
    }
    const head = chunk.subarray(Math.max(start, 0), end);
    const total = this.#partBytes + head.length;
    if (total > this.#maxBytes) {
      this.#parts = [];
      this.#partBytes = 0;
      this.#sink.error(SIZE_LIMIT);
      return;
    }
    let bytes = head;
    if (this.#parts.length > 0) {
      this.#parts.push(head);
      bytes = Buffer.concat(this.#parts, total);
      this.#parts = [];
      this.#partBytes = 0;
    }
    this.#sink.message(bytes);
  }
}
