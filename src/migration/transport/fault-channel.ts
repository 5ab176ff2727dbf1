/**
 * A channel with faults: a Duplex proxy in front of a connected socket that counts the bytes
 * going each way and can, at an exact byte count or once a condition holds (a migration
 * phase), cut the connection (close: the peer reads an end), reset it (RST: the peer reads
 * ECONNRESET), stall one direction (bytes held, nothing acknowledged, so the writer's
 * back-pressure and the peer's TCP window fill as on a dead link), or delay it.
 *
 * The migration code above sees an ordinary channel: the proxy is only put in front of a
 * connection when a fault is armed for it (faults/plan.ts), so the production path is the
 * plain socket. Locally, a cut or reset is an abort (ECONNABORTED): pending and later reads
 * and writes fail with an error naming the fault, and bytes not yet read are gone, as when a
 * kernel aborts a connection. A stall fails nothing (the stall timeout is what notices).
 */
import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { MigrationConnection } from './connection.ts';

export type ChannelDirection = 'in' | 'out';

/** A condition that fires a fault once; see `FaultChannel.addTripwire`. */
export interface Tripwire {
  /** The direction whose bytes are counted (and split) or, for `ready`, watched; default both. */
  readonly direction?: ChannelDirection;
  /** Fire once exactly this many bytes went `direction` (0: before the first one). */
  readonly atByte?: number;
  /** Or fire as soon as this holds: checked before each chunk, after each write and on polls. */
  readonly ready?: () => boolean;
  readonly fire: (channel: FaultChannel) => void;
}

interface ArmedTripwire extends Tripwire {
  fired: boolean;
}

interface HeldWrite {
  chunk: Buffer;
  cb: (err?: Error | null) => void;
}

/** How often `ready` tripwires are polled when no bytes flow (ms). */
const POLL_MS = 5;

/**
 * Ends `socket` at once: with `reset`, a TCP socket sends RST (the peer reads ECONNRESET);
 * otherwise, or when it is not TCP, it is closed (the peer reads an end).
 */
export function abortSocket(socket: Duplex, reset: boolean): void {
  const tcp = socket as Partial<Socket>;
  if (reset && typeof tcp.resetAndDestroy === 'function') tcp.resetAndDestroy();
  else socket.destroy();
}

export class FaultChannel extends Duplex {
  /** For messages: the connection's description. */
  readonly name: string;
  readonly #inner: Duplex;
  readonly #wires: ArmedTripwire[] = [];
  #bytesIn = 0;
  #bytesOut = 0;
  /** Bytes given to _write (the stall watchdog's `bytesWritten` view, see stall-watchdog.ts). */
  #accepted = 0;
  readonly #stalled = { in: false, out: false };
  readonly #delayMs = { in: 0, out: 0 };
  #heldIn: Buffer[] = [];
  #heldOut: HeldWrite[] = [];
  #innerEnded = false;
  #ended = false;
  #delivering = false;
  #dead: Error | null = null;
  #poll: NodeJS.Timeout | null = null;

  constructor(inner: Duplex, name: string) {
    super({ allowHalfOpen: true });
    this.#inner = inner;
    this.name = name;
    // Whoever reads or writes has its own 'error' handling; a direction nobody uses must not
    // turn a fault into an uncaught exception.
    this.on('error', () => undefined);
    inner.on('data', (chunk: Buffer) => this.#receive(chunk));
    inner.on('end', () => {
      this.#innerEnded = true;
      this.#maybeEnd();
    });
    inner.on('error', (err: Error) => this.destroy(err));
    inner.on('close', () => {
      // A peer that closed without ending, or a local destroy: nothing more will come.
      if (!this.#innerEnded && !this.destroyed) this.destroy(new Error(`${name}: channel closed`));
    });
  }

  get bytesIn(): number {
    return this.#bytesIn;
  }

  get bytesOut(): number {
    return this.#bytesOut;
  }

  /** What a socket's `bytesWritten` means: everything handed to write(), drained or not. */
  get bytesWritten(): number {
    return this.#accepted;
  }

  /** The fault that ended the channel, if one did. */
  get fault(): Error | null {
    return this.#dead;
  }

  addTripwire(t: Tripwire): void {
    if (t.atByte !== undefined && !(Number.isSafeInteger(t.atByte) && t.atByte >= 0)) {
      throw new RangeError(`byte count ${t.atByte} is not a non-negative integer`);
    }
    if ((t.atByte === undefined) === (t.ready === undefined)) {
      throw new Error('a tripwire needs exactly one of a byte count and a condition');
    }
    if (t.atByte !== undefined && t.direction === undefined) {
      throw new Error('a byte-count tripwire needs a direction');
    }
    const wire: ArmedTripwire = { ...t, fired: false };
    this.#wires.push(wire);
    if (t.ready !== undefined) this.#startPolling();
    const done = t.direction === 'in' ? this.#bytesIn : this.#bytesOut;
    // Armed after that byte went by: it fires now.
    if (t.atByte !== undefined && t.atByte < done) this.#fire(wire);
    this.poll();
  }

  /** Checks the condition tripwires now (their phase may have changed). */
  poll(): void {
    for (const w of this.#wires) {
      if (w.fired || w.ready === undefined || this.#dead) continue;
      if (w.ready()) this.#fire(w);
    }
    if (this.#wires.every((w) => w.fired || w.ready === undefined)) this.#stopPolling();
  }

  /** Closes the connection: the peer reads an end, every local read and write fails. */
  cut(why = 'cut'): void {
    this.#kill(why, false);
  }

  /** Resets the connection (TCP RST): the peer reads ECONNRESET. */
  reset(why = 'reset'): void {
    this.#kill(why, true);
  }

  /** Holds every byte going `direction` (for `ms`, or until resumed). */
  stall(direction: ChannelDirection, ms?: number): void {
    this.#stalled[direction] = true;
    if (direction === 'in') this.#inner.pause();
    if (ms !== undefined) setTimeout(() => this.unstall(direction), ms).unref();
  }

  /** Ends a stall: held bytes go on, in order. */
  unstall(direction: ChannelDirection): void {
    if (!this.#stalled[direction]) return;
    this.#stalled[direction] = false;
    if (direction === 'out') {
      const held = this.#heldOut;
      this.#heldOut = [];
      for (const h of held) this.#send(h.chunk, h.cb);
    } else {
      const held = this.#heldIn;
      this.#heldIn = [];
      for (const chunk of held) this.#receive(chunk);
      this.#maybeEnd();
      if (!this.#stalled.in) this.#inner.resume();
    }
  }

  /** Every later chunk going `direction` waits `ms` first (0 ends the delay). */
  delay(direction: ChannelDirection, ms: number): void {
    this.#delayMs[direction] = ms;
  }

  // --- the writable side: our bytes to the peer ---------------------------------------------

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.#accepted += chunk.length;
    this.#send(chunk, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.#dead) return cb(this.#dead);
    this.#inner.end(() => cb());
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.#stopPolling();
    for (const h of this.#heldOut.splice(0)) h.cb(this.#dead ?? err ?? new Error('destroyed'));
    this.#inner.destroy();
    cb(err);
  }

  #send(chunk: Buffer, cb: (err?: Error | null) => void): void {
    let rest = chunk;
    for (;;) {
      if (this.#dead) return cb(this.#dead);
      if (this.#stalled.out) {
        this.#heldOut.push({ chunk: rest, cb });
        return;
      }
      const cut = this.#nextCut('out', rest.length);
      if (cut === null) break;
      const [n, wire] = cut;
      if (n > 0) {
        this.#inner.write(rest.subarray(0, n));
        this.#bytesOut += n;
        rest = rest.subarray(n);
      }
      this.#fire(wire);
      if (rest.length === 0 && !this.#dead && !this.#stalled.out) return cb();
    }
    const done = (err?: Error | null) => {
      cb(err);
      // A write completing is when a phase often moves on (e.g. the EOF is out).
      if (!err) setImmediate(() => this.poll());
    };
    this.#bytesOut += rest.length;
    const ms = this.#delayMs.out;
    if (ms > 0) setTimeout(() => this.#inner.write(rest, done), ms);
    else this.#inner.write(rest, done);
  }

  // --- the readable side: the peer's bytes to us --------------------------------------------

  override _read(): void {
    if (!this.#stalled.in && !this.#delivering) this.#inner.resume();
  }

  #receive(chunk: Buffer): void {
    let rest = chunk;
    while (rest.length > 0) {
      if (this.#dead) return;
      if (this.#stalled.in) {
        this.#heldIn.push(rest);
        this.#inner.pause();
        return;
      }
      const cut = this.#nextCut('in', rest.length);
      if (cut === null) break;
      const [n, wire] = cut;
      if (n > 0) {
        this.#deliver(rest.subarray(0, n));
        rest = rest.subarray(n);
      }
      this.#fire(wire);
    }
    if (rest.length > 0) this.#deliver(rest);
  }

  #deliver(piece: Buffer): void {
    this.#bytesIn += piece.length;
    const ms = this.#delayMs.in;
    if (ms === 0) {
      if (!this.push(piece)) this.#inner.pause();
      return;
    }
    this.#delivering = true;
    this.#inner.pause();
    setTimeout(() => {
      this.#delivering = false;
      if (this.#dead) return;
      if (this.push(piece)) this.#inner.resume();
      this.#maybeEnd();
    }, ms);
  }

  #maybeEnd(): void {
    if (this.#ended || this.#dead || !this.#innerEnded) return;
    if (this.#heldIn.length > 0 || this.#delivering) return;
    this.#ended = true;
    this.push(null);
  }

  // --- tripwires ----------------------------------------------------------------------------

  /** The first tripwire that fires within the next `length` bytes going `dir`: [bytes before it, wire]. */
  #nextCut(dir: ChannelDirection, length: number): [number, ArmedTripwire] | null {
    const done = dir === 'in' ? this.#bytesIn : this.#bytesOut;
    let best: [number, ArmedTripwire] | null = null;
    for (const w of this.#wires) {
      if (w.fired || (w.direction !== undefined && w.direction !== dir)) continue;
      let at: number | null = null;
      if (w.atByte !== undefined) {
        const left = w.atByte - done;
        if (left < length) at = Math.max(0, left);
      } else if (w.ready!()) {
        at = 0;
      }
      if (at !== null && (best === null || at < best[0])) best = [at, w];
    }
    return best;
  }

  #fire(w: ArmedTripwire): void {
    if (w.fired) return;
    w.fired = true;
    w.fire(this);
  }

  #startPolling(): void {
    if (this.#poll !== null) return;
    this.#poll = setInterval(() => this.poll(), POLL_MS);
    this.#poll.unref();
  }

  #stopPolling(): void {
    if (this.#poll !== null) clearInterval(this.#poll);
    this.#poll = null;
  }

  #kill(why: string, reset: boolean): void {
    if (this.#dead) return;
    const err = new Error(
      `${this.name}: ${why} by fault injection ` +
        `(after ${this.#bytesOut} bytes out, ${this.#bytesIn} bytes in)`,
    );
    // As the kernel reports a connection aborted on this side.
    (err as NodeJS.ErrnoException).code = 'ECONNABORTED';
    this.#dead = err;
    abortSocket(this.#inner, reset);
    this.destroy(err);
  }
}

/** `conn` with a FaultChannel in front of its socket; a file (one direction) is refused. */
export function faultConnection(conn: MigrationConnection): {
  connection: MigrationConnection;
  channel: FaultChannel;
} {
  const socket = conn.socket;
  if (socket === null) throw new Error(`${conn.description}: channel faults need a socket channel`);
  const channel = new FaultChannel(socket, conn.description);
  const connection = new MigrationConnection({
    description: conn.description,
    readable: channel,
    writable: channel,
    returnPath: conn.returnPath,
  });
  return { connection, channel };
}
