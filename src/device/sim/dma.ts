/**
 * The device's DMA engine: every write a simulated device makes into guest memory (or, later,
 * into a peer device) goes through `DmaEngine.write`, which also feeds the DMA dirty log. Which
 * kinds of DMA a state allows is decided in one place, `dmaAllowed` (vfio-uapi.md §2).
 */
import { isP2PQuiescedState, isRunningState } from '../../uapi/index.ts';
import type { MigState } from '../../uapi/index.ts';
import type { DmaMemory } from '../device.ts';
import type { DmaDirtyLog } from './dma-log.ts';
import { Prng, RateAccumulator } from './prng.ts';

/** Guest memory DMA, or peer-to-peer DMA into another device's BAR. */
export type DmaKind = 'memory' | 'peer';

/**
 * No DMA at all in STOP, STOP_COPY, RESUMING and ERROR; no *initiated* peer-to-peer DMA in the
 * P2P states (RUNNING_P2P, PRE_COPY_P2P) either.
 */
export function dmaAllowed(state: MigState, kind: DmaKind): boolean {
  if (!isRunningState(state)) return false;
  return kind === 'memory' || !isP2PQuiescedState(state);
}

/** A device another device may write to by peer-to-peer DMA (the seam for P2P traffic). */
export interface P2pPeer {
  readonly id: string;
  p2pWrite(offset: number, data: Uint8Array): void;
}

/** Guest memory a device uses until a real one is attached: one private window at IOVA 0. */
export class PrivateDmaMemory implements DmaMemory {
  readonly regions: readonly { iova: number; length: number }[];
  readonly bytes: Uint8Array;

  constructor(length: number) {
    this.bytes = new Uint8Array(length);
    this.regions = [{ iova: 0, length }];
  }

  write(iova: number, data: Uint8Array): void {
    this.bytes.set(data, iova);
  }

  read(iova: number, length: number): Uint8Array {
    return this.bytes.slice(iova, iova + length);
  }
}

/** Default private memory: 4 MiB. */
export const PRIVATE_DMA_MEMORY_SIZE = 4 << 20;
/** Size of one DMA write the device issues (a descriptor-sized burst). */
export const DMA_WRITE_SIZE = 4096;

export class DmaEngine {
  #memory: DmaMemory | null = null;
  readonly #log: DmaDirtyLog | null;
  readonly #rng: Prng;
  readonly #acc = new RateAccumulator();
  readonly #payload = new Uint8Array(DMA_WRITE_SIZE);
  readonly #peers: P2pPeer[] = [];
  /** Total bytes written by DMA since power-on (statistics). */
  bytesWritten = 0;

  constructor(seed: number, log: DmaDirtyLog | null) {
    this.#rng = new Prng(seed ^ 0x00d3a);
    this.#rng.fill(this.#payload);
    this.#log = log;
  }

  /** The memory DMA lands in: the attached one, else a private buffer made on first use. */
  get memory(): DmaMemory {
    this.#memory ??= new PrivateDmaMemory(PRIVATE_DMA_MEMORY_SIZE);
    return this.#memory;
  }

  attach(memory: DmaMemory): void {
    this.#memory = memory;
  }

  connectPeer(peer: P2pPeer): void {
    this.#peers.push(peer);
  }

  get peers(): readonly P2pPeer[] {
    return this.#peers;
  }

  /** The single path of a DMA write into guest memory: memory, then the dirty log. */
  write(state: MigState, iova: number, data: Uint8Array): void {
    if (!dmaAllowed(state, 'memory')) {
      throw new Error(`device initiated DMA while in state ${state}, which forbids it`);
    }
    this.memory.write(iova, data);
    this.bytesWritten += data.length;
    this.#log?.recordWrite(iova, data.length);
  }

  /** Peer-to-peer DMA into `peer`; refused in the P2P-quiesced states. */
  peerWrite(state: MigState, peer: P2pPeer, offset: number, data: Uint8Array): void {
    if (!dmaAllowed(state, 'peer')) {
      throw new Error(`device initiated P2P DMA to ${peer.id} while P2P-quiesced (state ${state})`);
    }
    peer.p2pWrite(offset, data);
  }

  /** Activity: `bytesPerSecond` of DMA over `ms`, at seeded random places in guest memory. */
  run(state: MigState, bytesPerSecond: number, ms: number): void {
    if (!dmaAllowed(state, 'memory')) return;
    let bytes = this.#acc.take(bytesPerSecond, ms);
    const regions = this.memory.regions.filter((r) => r.length > 0);
    if (regions.length === 0) return;
    while (bytes > 0) {
      const region = regions[this.#rng.below(regions.length)]!;
      const len = Math.min(bytes, DMA_WRITE_SIZE, region.length);
      // 64-byte aligned, like a cache-line sized descriptor write.
      const slots = Math.floor((region.length - len) / 64) + 1;
      const iova = region.iova + this.#rng.below(slots) * 64;
      // A fresh 64-byte stamp so the written data changes from write to write.
      for (let i = 0; i < 64 && i < len; i += 4) {
        const v = this.#rng.nextU32();
        this.#payload[i] = v & 0xff;
        this.#payload[i + 1] = (v >>> 8) & 0xff;
        this.#payload[i + 2] = (v >>> 16) & 0xff;
        this.#payload[i + 3] = v >>> 24;
      }
      this.write(state, iova, this.#payload.subarray(0, len));
      bytes -= len;
    }
  }

  resetRate(): void {
    this.#acc.reset();
  }
}
