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
export const DEFAULT_PREFAULT_MIN_RAM = 256 * MiB;

export class RamPrefaulter {
  readonly #memory: GuestMemory;
  readonly #windowPages: number;
  readonly #enabled: boolean;
  readonly #shared = new SharedArrayBuffer(PREFAULT_CONTROL_WORDS * Int32Array.BYTES_PER_ELEMENT);
  readonly #control = new Int32Array(this.#shared);
  #worker: Worker | null = null;
  #exited: Promise<void> | null = null;

  constructor(memory: GuestMemory, opts: PrefaultOptions = {}) {
    this.#memory = memory;
    this.#windowPages = Math.floor(
      (opts.windowBytes ?? DEFAULT_PREFAULT_WINDOW) / TARGET_PAGE_SIZE,
    );
    this.#enabled = memory.ramSize >= (opts.minRamBytes ?? DEFAULT_PREFAULT_MIN_RAM);
  }

  /** Pages the thread touched so far. */
  get touched(): number {
    return Atomics.load(this.#control, W.TOUCHED);
  }

  /** True once the thread was started. */
  get started(): boolean {
    return this.#worker !== null;
  }

  /**
   * The loader is at `page` of block `block` (its index in the memory's block list): pages
   * from there on may be touched, up to a window ahead when `runAhead`, none otherwise.
   */
  ahead(block: number, page: number, runAhead: boolean): void {
    if (!this.#enabled) return;
    if (this.#worker === null) {
      if (!runAhead) return;
      this.#start();
    }
    const c = this.#control;
    c[W.BLOCK] = block;
    c[W.FROM] = page;
    c[W.TO] = runAhead ? page + this.#windowPages : page;
    Atomics.add(c, W.SEQ, 1);
    Atomics.notify(c, W.SEQ);
  }

  /** Ends the thread (idempotent); resolves once it has exited. */
  async stop(): Promise<void> {
    const worker = this.#worker;
    if (worker === null) return;
    this.#worker = null;
    // Waiting for its exit must keep the event loop alive (the thread itself does not).
    worker.ref();
    Atomics.store(this.#control, W.QUIT, 1);
    Atomics.add(this.#control, W.SEQ, 1);
    Atomics.notify(this.#control, W.SEQ);
    await this.#exited;
    // A later load may start a thread again.
    Atomics.store(this.#control, W.QUIT, 0);
  }

  #start(): void {
    const data: PrefaultThreadData = { blocks: this.#memory.shared(), control: this.#shared };
    const worker = spawnSiblingWorker(import.meta.url, './prefault-thread', { ...data });
    // Never keeps the process alive, and a failure only loses the speed-up.
    worker.unref();
    worker.on('error', (err) => process.emitWarning(`RAM prefault thread failed: ${err.message}`));
    this.#exited = new Promise((resolve) => worker.once('exit', () => resolve()));
    this.#worker = worker;
  }
}
