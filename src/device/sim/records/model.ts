/**
 * The record-engine device model shared by `nic` and `gpu` (vfio-uapi.md §9.2, mlx5-like):
 * a chunked internal state that changes at `dirty-rate`, DMA into guest memory at `dma-rate`,
 * a real DMA dirty tracker (or none), and the record stream of format.ts. With `p2p-rate` the
 * state ends in a P2P window (p2p-mailbox.ts) and the device writes into its peers' windows;
 * with `load-rate` a resuming device pays for setting up the chunks it loads (loader.ts).
 */
import type { Hash } from 'node:crypto';
import type { MigState } from '../../../uapi/index.ts';
import type { PciIds } from '../config-space.ts';
import { dmaAllowed } from '../dma.ts';
import type { DmaEngine } from '../dma.ts';
import { P2P_WRITE_SIZE } from '../p2p.ts';
import type { ResumingStream, SavingStream, SimModel } from '../model.ts';
import { Prng, RateAccumulator } from '../prng.ts';
import { ChunkedState } from './chunked-state.ts';
import type { StreamIdentity } from './format.ts';
import { RecordLoader } from './loader.ts';
import { P2P_LANDING_SIZE, P2P_WINDOW_SIZE, P2pMailbox } from './p2p-mailbox.ts';
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
  /** P2P writes per second into peers while running; > 0 also gives the state a P2P window. */
  p2pRate: number;
  /** Bytes per second a resuming device sets up on first load of a chunk; 0 is free. */
  loadRate: number;
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
  /** The P2P window, when `p2pRate` > 0. */
  readonly p2p: P2pMailbox | undefined;
  #p2pRng: Prng;
  readonly #p2pAcc = new RateAccumulator();
  readonly #p2pPayload = new Uint8Array(P2P_WRITE_SIZE);

  constructor(opts: RecordModelOptions) {
    this.#opts = opts;
    this.kind = opts.kind;
    this.pciIds = opts.pciIds;
    this.dmaLogging = opts.logging ? 'tracking' : 'absent';
    const window = opts.p2pRate > 0 ? P2P_WINDOW_SIZE : 0;
    this.state = new ChunkedState(opts.stateSize, opts.chunkSize, window);
    this.identity = { modelId: opts.modelId, chunkSize: opts.chunkSize, stateSize: opts.stateSize };
    this.#rng = new Prng(opts.seed);
    this.#p2pRng = new Prng(opts.seed ^ 0x0029);
    this.p2p = window > 0 ? new P2pMailbox(this.state) : undefined;
    this.state.powerOn(opts.seed);
    this.p2p?.reset();
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
    return new RecordLoader(this.state, this.identity, this.#opts.loadRate);
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
    if (this.p2p !== undefined) this.#issueP2p(ms, state, dma);
  }

  powerOn(): void {
    this.closeSession();
    this.#rng = new Prng(this.#opts.seed);
    this.#p2pRng = new Prng(this.#opts.seed ^ 0x0029);
    this.#acc.reset();
    this.#p2pAcc.reset();
    this.state.powerOn(this.#opts.seed);
    this.p2p?.reset();
  }

  digest(hash: Hash): void {
    hash.update(this.state.bytes);
  }

  /**
   * P2P activity: `p2p-rate` writes per second, each to a random peer's window, never while
   * P2P-quiesced (the carried fraction is simply dropped then). Every write takes the next
   * transmit sequence number of this device's own window and carries it in its first bytes.
   */
  #issueP2p(ms: number, state: MigState, dma: DmaEngine): void {
    const n = this.#p2pAcc.take(this.#opts.p2pRate, ms);
    const peers = dma.peers;
    if (n === 0 || peers.length === 0 || !dmaAllowed(state, 'peer')) return;
    const payload = this.#p2pPayload;
    const dv = new DataView(payload.buffer);
    const slots = Math.floor(P2P_LANDING_SIZE / P2P_WRITE_SIZE);
    for (let i = 0; i < n; i++) {
      const peer = peers[this.#p2pRng.below(peers.length)]!;
      const seq = this.p2p!.nextTxSeq();
      this.#p2pRng.fill(payload);
      dv.setUint32(0, seq, true);
      dma.peerWrite(state, peer, seq, this.#p2pRng.below(slots) * P2P_WRITE_SIZE, payload);
    }
  }

  /** The open saving session, if any (for statistics). */
  get saver(): RecordSaver | null {
    return this.#saver;
  }
}
