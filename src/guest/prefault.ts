/**
 * Parallel first touch of guest RAM during an incoming migration. The first write to each
 * page of a fresh destination makes the kernel allocate and zero it; done by the loader, that
 * costs more than the page's copy (several µs per page, far more in a VM whose memory the
 * host backs lazily). A thread (prefault-thread.ts) takes those faults instead, running a
 * bounded window ahead of the loader, in parallel with the main thread reading the stream.
 *
 * It only runs ahead where the stream is dense with pages: a zero page is not written on a
 * fresh destination, and touching it would allocate memory QEMU would not. The loader reports
 * where it is and whether the records it just read were mostly pages (`ahead`); the thread is
 * started the first time running ahead pays off, and only for RAM large enough to matter.
 */
import type { Worker } from 'node:worker_threads';
import type { GuestMemory } from '../memory/guest-memory.ts';
import { MiB, TARGET_PAGE_SIZE } from '../memory/page.ts';
import { PREFAULT_CONTROL_WORDS, PrefaultWord as W } from './prefault-protocol.ts';
import type { PrefaultThreadData } from './prefault-protocol.ts';
import { spawnSiblingWorker } from './spawn-worker.ts';

export interface PrefaultOptions {
  /** How far ahead of the loader pages are touched, in bytes (default 64 MiB). */
  readonly windowBytes?: number;
  /** RAM below this size is never prefaulted: a thread costs more than it saves. */
  readonly minRamBytes?: number;
}

export const DEFAULT_PREFAULT_WINDOW = 64 * MiB;
const PREFAULT_THREAD_LIMITS = { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 1 };
export const DEFAULT_PREFAULT_MIN_RAM = 256 * MiB;

export class RamPrefaulter {
  readonly #memory: GuestMemory;
  readonly #windowPages: number;
  readonly #enabled: boolean;
  /** The running thread's control block (each thread has its own), or null. */
  #control: Int32Array | null = null;
  #worker: Worker | null = null;
  #exited: Promise<void> = Promise.resolve();
  /** Pages touched by threads already stopped. */
  #touchedBefore = 0;

  constructor(memory: GuestMemory, opts: PrefaultOptions = {}) {
    this.#memory = memory;
    this.#windowPages = Math.floor(
      (opts.windowBytes ?? DEFAULT_PREFAULT_WINDOW) / TARGET_PAGE_SIZE,
    );
    this.#enabled = memory.ramSize >= (opts.minRamBytes ?? DEFAULT_PREFAULT_MIN_RAM);
  }

  /** Pages touched so far, by every thread this prefaulter started. */
  get touched(): number {
    const c = this.#control;
    return this.#touchedBefore + (c === null ? 0 : Atomics.load(c, W.TOUCHED));
  }

  /** True while a thread runs. */
  get started(): boolean {
    return this.#control !== null;
  }

  /**
   * The loader is at `page` of block `block` (its index in the memory's block list): pages
   * from there on may be touched, up to a window ahead when `runAhead`, none otherwise.
   */
  ahead(block: number, page: number, runAhead: boolean): void {
    if (!this.#enabled) return;
    let c = this.#control;
    if (c === null) {
      if (!runAhead) return;
      c = this.#start();
    }
    c[W.BLOCK] = block;
    c[W.FROM] = page;
    c[W.TO] = runAhead ? page + this.#windowPages : page;
    Atomics.add(c, W.SEQ, 1);
    Atomics.notify(c, W.SEQ);
  }

  /**
   * Tells the thread to end and returns at once: the load's end (and the downtime it is part
   * of) does not wait for a thread to be torn down. `exited()` resolves once it is gone.
   */
  stop(): void {
    const c = this.#control;
    if (c === null) return;
    this.#control = null;
    Atomics.store(c, W.QUIT, 1);
    Atomics.add(c, W.SEQ, 1);
    Atomics.notify(c, W.SEQ);
    this.#touchedBefore += Atomics.load(c, W.TOUCHED);
  }

  /** Resolves once the last thread started has exited (keeping the process alive till then). */
  exited(): Promise<void> {
    this.#worker?.ref();
    return this.#exited;
  }

  #start(): Int32Array {
    const shared = new SharedArrayBuffer(PREFAULT_CONTROL_WORDS * Int32Array.BYTES_PER_ELEMENT);
    const data: PrefaultThreadData = { blocks: this.#memory.shared(), control: shared };
    // A small heap: the thread allocates next to nothing, and its memory counts against the
    // destination's.
    const worker = spawnSiblingWorker(
      import.meta.url,
      './prefault-thread',
      { ...data },
      { resourceLimits: PREFAULT_THREAD_LIMITS },
    );
    // Never keeps the process alive, and a failure only loses the speed-up.
    worker.unref();
    worker.on('error', (err) => process.emitWarning(`RAM prefault thread failed: ${err.message}`));
    this.#exited = new Promise((resolve) => worker.once('exit', () => resolve()));
    this.#worker = worker;
    this.#control = new Int32Array(shared);
    return this.#control;
  }
}
