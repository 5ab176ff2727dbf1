/**
 * The one error type of the stream layer. Every decoding failure — truncation, a bad value, a
 * length over its cap, a failed source — is a `StreamError` carrying the stream offset, so a
 * report can say exactly where a migration stream went wrong. The load loop adds the section
 * it was in with `withContext()`.
 */
export class StreamError extends Error {
  override readonly name = 'StreamError';
  /** Bytes consumed from the start of the stream when the problem was found. */
  readonly offset: number;
  /** What was being read, e.g. "section footer" or "ram record header". */
  readonly what: string;

  constructor(message: string, offset: number, what: string, options?: { cause?: unknown }) {
    super(message, options);
    this.offset = offset;
    this.what = what;
  }

  /** The same error seen from an outer level: "section 'ram' (id 2): <message>". */
  withContext(context: string): StreamError {
    return new StreamError(`${context}: ${this.message}`, this.offset, this.what, { cause: this });
  }
}

export function isStreamError(err: unknown): err is StreamError {
  return err instanceof StreamError;
}

/** The input ended in the middle of an item. `offset` is where it ended. */
export function unexpectedEnd(offset: number, what: string): StreamError {
  return new StreamError(
    `unexpected end of stream at offset ${offset} while reading ${what}`,
    offset,
    what,
  );
}

/** A value that cannot be accepted: "<what> at offset N: <problem>". */
export function badInput(offset: number, what: string, problem: string): StreamError {
  return new StreamError(`${what} at offset ${offset}: ${problem}`, offset, what);
}

/** The byte source itself failed (socket reset, file error). */
export function sourceFailed(offset: number, what: string, cause: unknown): StreamError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new StreamError(
    `stream failed at offset ${offset} while reading ${what}: ${reason}`,
    offset,
    what,
    { cause },
  );
}
