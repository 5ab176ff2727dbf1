/**
 * The record-engine device model shared by `nic` and `gpu` (vfio-uapi.md §9.2, mlx5-like):
 * a chunked internal state that changes at `dirty-rate`, DMA into guest memory at `dma-rate`,
 * a real DMA dirty tracker (or none), and the record stream of format.ts.
 */
import type { Hash } from 'node:crypto';
import type { MigState } from '../../../uapi/index.ts';
import type { PciIds } from '../config-space.ts';
import type { DmaEngine } from '../dma.ts';
import type { ResumingStream, SavingStream, SimModel } from '../model.ts';
import { Prng, RateAccumulator } from '../prng.ts';
import { ChunkedState } from './chunked-state.ts';
import type { StreamIdentity } from './format.ts';
import { RecordLoader } from './loader.ts';
import { fullStreamBytes, RecordSaver } from './saver.ts';

export interface RecordModelOptions {
  kind: string;
  /** Stream identity number of the model (nic 1, gpu 2). */
  modelId: number;
  pciIds: PciIds;
  stateSize: number;
  chunkSize: number;
  /** Bytes of internal state rewritten per second while running. */
  dirtyRate: number;
  /** Bytes written into guest memory by DMA per second while running. */
  dmaRate: number;
  /** Whether the device has DMA logging ops. */
  logging: boolean;
  seed: number;
}

export class RecordModel implements SimModel {
  readonly kind: string;
  readonly pciIds: PciIds;
  readonly dmaLogging: 'tracking' | 'absent';
  readonly state: ChunkedState;
  readonly identity: StreamIdentity;
  readonly #opts: RecordModelOptions;
  #rng: Prng;
  readonly #acc = new RateAccumulator();
  #saver: RecordSaver | null = null;

  constructor(opts: RecordModelOptions) {
    this.#opts = opts;
    this.kind = opts.kind;
    this.pciIds = opts.pciIds;
    this.dmaLogging = opts.logging ? 'tracking' : 'absent';
    this.state = new ChunkedState(opts.stateSize, opts.chunkSize);
    this.identity = { modelId: opts.modelId, chunkSize: opts.chunkSize, stateSize: opts.stateSize };
    this.#rng = new Prng(opts.seed);
    this.state.powerOn(opts.seed);
  }

  fullStateBytes(): number {
    return fullStreamBytes(this.state);
  }

  openSaving(precopy: boolean): SavingStream {
    const saver = new RecordSaver(this.state, this.identity, precopy);
    this.#saver = saver;
    this.state.onChange = (chunk) => saver.noteChange(chunk);
    return saver;
  }

  openResuming(): ResumingStream {
    return new RecordLoader(this.state, this.identity);
  }

  closeSession(): void {
    this.#saver = null;
    this.state.onChange = null;
  }

  run(ms: number, state: MigState, dma: DmaEngine): void {
    // `dirty-rate` is what the device's change tracking sees: chunks dirtied per second times
    // the chunk size. Each dirtied chunk gets one block rewritten.
    const chunks = this.#acc.take(this.#opts.dirtyRate / this.state.chunkSize, ms);
    if (chunks > 0) this.state.mutate(this.#rng, chunks);
    dma.run(state, this.#opts.dmaRate, ms);
  }

  powerOn(): void {
    this.closeSession();
    this.#rng = new Prng(this.#opts.seed);
    this.#acc.reset();
    this.state.powerOn(this.#opts.seed);
  }

  digest(hash: Hash): void {
    hash.update(this.state.bytes);
  }

  /** The open saving session, if any (for statistics). */
  get saver(): RecordSaver | null {
    return this.#saver;
  }
}
