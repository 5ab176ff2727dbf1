/**
 * The vCPUs of one VM: worker threads running vcpu-thread.ts against the shared guest RAM, and
 * the main-thread side of the stop/park protocol (vcpu-protocol.ts).
 *
 * vCPU threads are created parked, like QEMU's (`cpu->stopped` until `vm_start`). They do not
 * keep the process alive (unref'd); the waits below hold a timer while they run, because a
 * pending `Atomics.waitAsync` alone does not keep Node's event loop alive. A thread that dies
 * is reported to `onCrash` listeners (or as a process warning when there are none) and counts
 * as parked from then on.
 */
import type { Worker } from 'node:worker_threads';
import type { GuestMemory } from '../memory/guest-memory.ts';
import { MiB, TARGET_PAGE_SIZE } from '../memory/page.ts';
import type { VcpuPauser } from './run-control.ts';
import { spawnSiblingWorker } from './spawn-worker.ts';
import {
  ACK_DEAD,
  ACK_NONE,
  COUNTERS_PER_VCPU,
  Counter,
  VcpuOp,
  type VcpuThreadData,
  ackCovers,
  commandWord,
  opOf,
} from './vcpu-protocol.ts';
import { type Workload, type WorkloadConfig, checkWorkload } from './workload.ts';

export interface VcpusOptions {
  /** Number of vCPU threads, 0..64. */
  readonly count: number;
  readonly workload: WorkloadConfig;
  /** How long start-up and each pause may take before it is an error. Default 30 s. */
  readonly timeoutMs?: number;
}

export type VcpuState = 'parked' | 'running' | 'crashed' | 'exited';

export interface VcpuStats {
  readonly index: number;
  readonly state: VcpuState;
  readonly pagesWritten: number;
  readonly zeroPagesWritten: number;
}

export interface VcpusStats {
  readonly vcpus: readonly VcpuStats[];
  readonly pagesWritten: number;
  readonly zeroPagesWritten: number;
  /** Time spent running (between resumes and pauses), in ms. */
  readonly runningMs: number;
  /** Page writes per second over `runningMs`, in MiB/s of pages. */
  readonly achievedMiBps: number;
  readonly configuredMiBps: number | 'max';
}

export type VcpuCrashListener = (index: number, error: Error) => void;

export const MAX_VCPUS = 64;

export class Vcpus implements VcpuPauser {
  readonly count: number;
  readonly workload: Workload;
  readonly #timeoutMs: number;
  readonly #workers: Worker[] = [];
  readonly #exited: Promise<void>[] = [];
  readonly #state: VcpuState[] = [];
  readonly #command: Int32Array;
  readonly #acks: Int32Array;
  readonly #faults: Int32Array;
  readonly #counters: BigInt64Array;
  readonly #crashListeners: VcpuCrashListener[] = [];
  readonly #crashes: { index: number; error: Error }[] = [];
  #epoch = 0;
  #runningSince: number | undefined;
  #runningMs = 0;
  #destroyed = false;
  /** While `create` waits, a crash is reported by its rejection, not as a warning. */
  #starting = true;

  private constructor(memory: GuestMemory, options: VcpusOptions) {
    const { count } = options;
    if (!Number.isInteger(count) || count < 0 || count > MAX_VCPUS) {
      throw new RangeError(`vcpus: count ${count} is not an integer in [0, ${MAX_VCPUS}]`);
    }
    this.count = count;
    this.workload = checkWorkload(options.workload, memory.totalPages, Math.max(count, 1));
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    const shared = {
      command: new SharedArrayBuffer(4),
      acks: new SharedArrayBuffer(4 * count),
      faults: new SharedArrayBuffer(4 * count),
      counters: new SharedArrayBuffer(8 * COUNTERS_PER_VCPU * count),
    };
    this.#command = new Int32Array(shared.command);
    this.#acks = new Int32Array(shared.acks).fill(ACK_NONE);
    this.#faults = new Int32Array(shared.faults);
    this.#counters = new BigInt64Array(shared.counters);
    Atomics.store(this.#command, 0, commandWord(this.#epoch, VcpuOp.PAUSE));
    const blocks = memory.shared();
    for (let index = 0; index < count; index++) {
      const data: VcpuThreadData = { index, count, blocks, workload: this.workload, ...shared };
      const worker = spawnSiblingWorker(import.meta.url, './vcpu-thread', data, {
        name: `vcpu${index}`,
      });
      worker.unref();
      this.#state.push('parked');
      this.#workers.push(worker);
      worker.on('error', (err) => this.#died(index, err));
      this.#exited.push(
        new Promise((resolve) => {
          worker.once('exit', (code) => {
            if (
              this.#state[index] !== 'crashed' &&
              opOf(Atomics.load(this.#command, 0)) !== VcpuOp.EXIT
            ) {
              this.#died(index, new Error(`vCPU ${index} thread exited with code ${code}`));
            }
            if (this.#state[index] !== 'crashed') this.#state[index] = 'exited';
            resolve();
          });
        }),
      );
    }
  }

  /** Starts `count` vCPU threads on `memory`; resolves once every one is up and parked. */
  static async create(memory: GuestMemory, options: VcpusOptions): Promise<Vcpus> {
    const vcpus = new Vcpus(memory, options);
    try {
      await vcpus.#waitParked(Atomics.load(vcpus.#command, 0), 'start');
    } catch (err) {
      await vcpus.destroy();
      throw err;
    }
    const crash = vcpus.#crashes[0];
    if (crash !== undefined) {
      await vcpus.destroy();
      throw new Error(`vCPU ${crash.index} failed to start: ${crash.error.message}`, {
        cause: crash.error,
      });
    }
    vcpus.#starting = false;
    return vcpus;
  }

  /** `resume_all_vcpus`. */
  resumeAll(): void {
    if (this.#destroyed) throw new Error('vcpus: resume after destroy');
    this.#issue(VcpuOp.RUN);
    this.#runningSince ??= performance.now();
    this.#setLiveState('running');
  }

  /** `pause_all_vcpus`: resolves when every vCPU has parked; no guest byte changes after. */
  async pauseAll(): Promise<void> {
    if (this.#destroyed) throw new Error('vcpus: pause after destroy');
    const word = this.#issue(VcpuOp.PAUSE);
    await this.#waitParked(word, 'pause');
    if (this.#runningSince !== undefined) {
      this.#runningMs += performance.now() - this.#runningSince;
      this.#runningSince = undefined;
    }
    this.#setLiveState('parked');
  }

  /** True while the vCPUs were last told to run. */
  get running(): boolean {
    return this.#runningSince !== undefined;
  }

  /** Stops every thread and waits for it to exit (terminating stragglers). Idempotent. */
  async destroy(): Promise<void> {
    if (!this.#destroyed) {
      this.#destroyed = true;
      if (this.#runningSince !== undefined) {
        this.#runningMs += performance.now() - this.#runningSince;
        this.#runningSince = undefined;
      }
      this.#issue(VcpuOp.EXIT);
    }
    const timer = setTimeout(() => {
      for (const w of this.#workers) void w.terminate();
    }, this.#timeoutMs);
    try {
      await Promise.all(this.#exited);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Counters and achieved rate. Counters are published by the vCPUs every batch of writes. */
  stats(): VcpusStats {
    const vcpus: VcpuStats[] = [];
    let pages = 0;
    let zeros = 0;
    for (let i = 0; i < this.count; i++) {
      const base = i * COUNTERS_PER_VCPU;
      const pagesWritten = Number(Atomics.load(this.#counters, base + Counter.PAGES));
      const zeroPagesWritten = Number(Atomics.load(this.#counters, base + Counter.ZERO_PAGES));
      vcpus.push({ index: i, state: this.#state[i]!, pagesWritten, zeroPagesWritten });
      pages += pagesWritten;
      zeros += zeroPagesWritten;
    }
    const runningMs =
      this.#runningMs +
      (this.#runningSince === undefined ? 0 : performance.now() - this.#runningSince);
    const achievedMiBps = runningMs > 0 ? (pages * TARGET_PAGE_SIZE) / MiB / (runningMs / 1000) : 0;
    return {
      vcpus,
      pagesWritten: pages,
      zeroPagesWritten: zeros,
      runningMs,
      achievedMiBps,
      configuredMiBps: this.workload.dirtyRateMiBps,
    };
  }

  /** Crash reports; returns the unsubscribe function. */
  onCrash(listener: VcpuCrashListener): () => void {
    this.#crashListeners.push(listener);
    return () => {
      const i = this.#crashListeners.indexOf(listener);
      if (i >= 0) this.#crashListeners.splice(i, 1);
    };
  }

  get crashes(): readonly { index: number; error: Error }[] {
    return this.#crashes;
  }

  /** Fault injection: vCPU `index` throws at its next batch, as a crashing thread would. */
  injectFault(index: number): void {
    if (!(index >= 0 && index < this.count)) {
      throw new RangeError(`vcpus: no vCPU ${index} (count ${this.count})`);
    }
    Atomics.store(this.#faults, index, 1);
  }

  #issue(op: VcpuOp): number {
    const word = commandWord(++this.#epoch, op);
    Atomics.store(this.#command, 0, word);
    Atomics.notify(this.#command, 0);
    return word;
  }

  #setLiveState(state: 'parked' | 'running'): void {
    for (let i = 0; i < this.count; i++) {
      if (this.#state[i] === 'parked' || this.#state[i] === 'running') this.#state[i] = state;
    }
  }

  #died(index: number, error: Error): void {
    if (this.#state[index] === 'crashed') return;
    this.#state[index] = 'crashed';
    this.#crashes.push({ index, error });
    Atomics.store(this.#acks, index, ACK_DEAD);
    Atomics.notify(this.#acks, index);
    if (this.#crashListeners.length === 0 && !this.#starting) {
      process.emitWarning(`vCPU ${index} crashed: ${error.message}`, { code: 'VCPU_CRASH' });
    }
    for (const listener of [...this.#crashListeners]) listener(index, error);
  }

  /** Waits until every vCPU's ack covers `word`, with one deadline for all. */
  async #waitParked(word: number, what: string): Promise<void> {
    const deadline = performance.now() + this.#timeoutMs;
    // A pending Atomics.waitAsync does not keep the event loop alive; this timer does.
    const keepAlive = setInterval(() => {}, 1 << 30);
    try {
      for (let i = 0; i < this.count; i++) {
        for (;;) {
          const ack = Atomics.load(this.#acks, i);
          if (ackCovers(ack, word)) break;
          const left = deadline - performance.now();
          if (left <= 0) {
            throw new Error(`vCPU ${i} did not park within ${this.#timeoutMs} ms (${what})`);
          }
          const wait = waitAsync(this.#acks, i, ack, left);
          if (wait.async) await wait.value;
        }
      }
    } finally {
      clearInterval(keepAlive);
    }
  }
}

/** `Atomics.waitAsync` (ES2024, in Node since 16; the es2023 lib typings lack it). */
type WaitAsyncResult =
  | { async: false; value: 'not-equal' | 'timed-out' }
  | { async: true; value: Promise<'ok' | 'timed-out'> };
const waitAsync = (
  Atomics as unknown as {
    waitAsync(
      this: void,
      view: Int32Array,
      index: number,
      value: number,
      timeoutMs?: number,
    ): WaitAsyncResult;
  }
).waitAsync;
