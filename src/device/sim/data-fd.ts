/**
 * A migration data fd of a simulated device (vfio-uapi.md §6): the VFS-level checks (EBADF,
 * ESPIPE), the session-level ones (ENODEV once disabled) and the PRE_COPY / STOP_COPY end
 * rules, around a model's SavingStream or ResumingStream.
 */
import type { DataFd } from '../device.ts';
import {
  checkPrecopyInfoCall,
  fail,
  isPreCopyState,
  VFIO_PRECOPY_INFO_SIZE,
} from '../../uapi/index.ts';
import type { MigState, PrecopyInfo } from '../../uapi/index.ts';
import type { SimFaults } from './faults.ts';
import type { ResumingStream, SavingStream } from './model.ts';

/** What an fd needs from its device. */
export interface DataFdHost {
  readonly faults: SimFaults;
  currentState(): MigState;
}

/** Below this, device work is carried to the next write instead of a timer of its own. */
const MIN_WORK_SLEEP_MS = 2;

type Stream =
  { kind: 'saving'; stream: SavingStream } | { kind: 'resuming'; stream: ResumingStream };

export class SimDataFd implements DataFd {
  readonly kind: 'saving' | 'resuming';
  readonly #s: Stream;
  readonly #host: DataFdHost;
  #live = true;
  #closed = false;
  /** Bytes delivered so far (stream offset of the next read), for truncate/corrupt faults. */
  #offset = 0;
  /** Device work (ms) the writes owe and have not slept yet. */
  #workDebtMs = 0;

  constructor(s: Stream, host: DataFdHost) {
    this.kind = s.kind;
    this.#s = s;
    this.#host = host;
  }

  /** True while the session this fd belongs to is open. */
  get live(): boolean {
    return this.#live;
  }

  /** The driver ends the session: every later read/write/PRECOPY_INFO is ENODEV. */
  disable(): void {
    this.#live = false;
  }

  async read(buf: Uint8Array): Promise<number> {
    this.#checkOpen('read');
    if (this.#s.kind !== 'saving') fail('EBADF', 'read: the resuming fd is write-only');
    await this.#host.faults.stallRead();
    this.#checkOpen('read');
    if (!this.#live) fail('ENODEV', 'read: the data session has ended');
    const saving = this.#s.stream;
    const faults = this.#host.faults;
    const allowed = faults.readAllowance(this.#offset, buf.length);
    const n =
      allowed === 0 ? 0 : saving.read(allowed === buf.length ? buf : buf.subarray(0, allowed));
    if (n === 0) {
      // §6.1: a temporary end in PRE_COPY*; in STOP_COPY the end is permanent (0 forever).
      if (buf.length > 0 && isPreCopyState(this.#host.currentState())) {
        fail('ENOMSG', 'read: no pre-copy data available right now');
      }
      return 0;
    }
    faults.damage(buf.subarray(0, n), this.#offset);
    this.#offset += n;
    return n;
  }

  async write(buf: Uint8Array): Promise<number> {
    await Promise.resolve();
    this.#checkOpen('write');
    if (this.#s.kind !== 'resuming') fail('EBADF', 'write: the saving fd is read-only');
    if (!this.#live) fail('ENODEV', 'write: the data session has ended');
    const busyMs = buf.length > 0 ? this.#s.stream.write(buf) : 0;
    this.#offset += buf.length;
    if (busyMs > 0) await this.#work(busyMs);
    return buf.length;
  }

  pread(_buf: Uint8Array, _offset: number): Promise<number> {
    return this.#positional('pread');
  }

  pwrite(_buf: Uint8Array, _offset: number): Promise<number> {
    return this.#positional('pwrite');
  }

  precopyInfo(argsz = VFIO_PRECOPY_INFO_SIZE, flags = 0): Promise<PrecopyInfo> {
    return Promise.resolve().then(() => {
      this.#checkOpen('PRECOPY_INFO');
      if (this.#s.kind !== 'saving') fail('ENOTTY', 'PRECOPY_INFO: the resuming fd has no ioctls');
      checkPrecopyInfoCall(argsz, this.#host.currentState(), this.#live);
      return { argsz, flags, ...this.#s.stream.precopyInfo() };
    });
  }

  close(): void {
    this.#closed = true;
  }

  /**
   * The device works `ms` before the write returns. Short spans add up and are slept in one
   * go; a timer that fires late pays back the excess, so the long-run rate is the model's.
   */
  async #work(ms: number): Promise<void> {
    this.#workDebtMs += ms;
    if (this.#workDebtMs < MIN_WORK_SLEEP_MS) return;
    const start = performance.now();
    await new Promise((resolve) => setTimeout(resolve, this.#workDebtMs));
    this.#workDebtMs -= performance.now() - start;
  }

  #checkOpen(what: string): void {
    if (this.#closed) fail('EBADF', `${what}: the data fd is closed`);
  }

  #positional(what: string): Promise<number> {
    return Promise.resolve().then(() => {
      this.#checkOpen(what);
      // Stream files (stream_open): positional I/O is refused before any driver code.
      return fail('ESPIPE', `${what}: data fds are streams`);
    });
  }
}
