/**
 * The device's DMA engine: every write a simulated device makes into guest memory goes
 * through `DmaEngine.write`, which also feeds the DMA dirty log, and every write into a peer
 * device through `DmaEngine.peerWrite`, which logs it. Which kinds of DMA a state allows is
 * decided in one place, `dmaAllowed` (vfio-uapi.md §2).
 *
 * Behind an IOMMU whose dirty tracking counts pinned pages (type1 with pinned-page scope), the
 * driver pins what it DMAs to, as an mdev vendor driver does with vfio_pin_pages(): each write
 * is pinned for its duration, and a small descriptor ring at the start of the first DMA window
 * stays pinned for as long as the memory is attached.
 */
import { isP2PQuiescedState, isRunningState } from '../../uapi/index.ts';
import type { MigState } from '../../uapi/index.ts';
import type { DmaMemory } from '../device.ts';
import type { DmaDirtyLog } from './dma-log.ts';
import { P2pLog } from './p2p.ts';
import type { P2pPeer } from './p2p.ts';
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

/** Guest memory whose IOMMU wants DMA targets pinned (see the file comment). */
export interface PinnableDmaMemory extends DmaMemory {
  pinPages(iova: number, length: number): void;
  unpinPages(iova: number, length: number): void;
}

export function isPinnable(m: DmaMemory): m is PinnableDmaMemory {
  return (
    typeof (m as Partial<PinnableDmaMemory>).pinPages === 'function' &&
    typeof (m as Partial<PinnableDmaMemory>).unpinPages === 'function'
  );
}

/** The descriptor ring a driver keeps pinned behind a pinning IOMMU. */
export const DMA_RING_SIZE = 16 << 10;

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
  /** The device, as its peers see the initiator. */
  readonly id: string;
  /** Every P2P transaction this device initiated or received. */
  readonly p2pLog = new P2pLog();
  #memory: DmaMemory | null = null;
  /** The pinned descriptor ring, behind a pinning IOMMU. */
  #ring: { memory: PinnableDmaMemory; iova: number; length: number } | null = null;
  readonly #log: DmaDirtyLog | null;
  readonly #rng: Prng;
  readonly #acc = new RateAccumulator();
  readonly #payload = new Uint8Array(DMA_WRITE_SIZE);
  readonly #peers: P2pPeer[] = [];
  /** Total bytes written by DMA since power-on (statistics). */
  bytesWritten = 0;

  constructor(seed: number, log: DmaDirtyLog | null, id = 'device') {
    this.#rng = new Prng(seed ^ 0x00d3a);
    this.#rng.fill(this.#payload);
    this.#log = log;
    this.id = id;
  }

  /** The memory DMA lands in: the attached one, else a private buffer made on first use. */
  get memory(): DmaMemory {
    this.#memory ??= new PrivateDmaMemory(PRIVATE_DMA_MEMORY_SIZE);
    return this.#memory;
  }

  attach(memory: DmaMemory): void {
    this.release();
    this.#memory = memory;
    const first = memory.regions.find((r) => r.length > 0);
    if (isPinnable(memory) && first !== undefined) {
      const length = Math.min(DMA_RING_SIZE, first.length);
      memory.pinPages(first.iova, length);
      this.#ring = { memory, iova: first.iova, length };
    }
  }

  /** Unpins the descriptor ring (device closed or memory replaced). */
  release(): void {
    const ring = this.#ring;
    this.#ring = null;
    ring?.memory.unpinPages(ring.iova, ring.length);
  }

  connectPeer(peer: P2pPeer): void {
    if (!this.#peers.includes(peer)) this.#peers.push(peer);
  }

  disconnectPeer(peer: P2pPeer): void {
    const i = this.#peers.indexOf(peer);
    if (i >= 0) this.#peers.splice(i, 1);
  }

  get peers(): readonly P2pPeer[] {
    return this.#peers;
  }

  /** The single path of a DMA write into guest memory: memory, then the dirty log. */
  write(state: MigState, iova: number, data: Uint8Array): void {
    if (!dmaAllowed(state, 'memory')) {
      throw new Error(`device initiated DMA while in state ${state}, which forbids it`);
    }
    const memory = this.memory;
    if (isPinnable(memory)) {
      memory.pinPages(iova, data.length);
      try {
        memory.write(iova, data);
      } finally {
        memory.unpinPages(iova, data.length);
      }
    } else {
      memory.write(iova, data);
    }
    this.bytesWritten += data.length;
    this.#log?.recordWrite(iova, data.length);
  }

  /**
   * Peer-to-peer DMA into `peer`, this device's `seq`-th transaction; refused (thrown) in the
   * P2P-quiesced states. Logged with whether the peer took it. Returns that.
   */
  peerWrite(
    state: MigState,
    peer: P2pPeer,
    seq: number,
    offset: number,
    data: Uint8Array,
  ): boolean {
    if (!dmaAllowed(state, 'peer')) {
      throw new Error(`device initiated P2P DMA to ${peer.id} while P2P-quiesced (state ${state})`);
    }
    const accepted = peer.p2pWrite(this.id, seq, offset, data);
    this.p2pLog.recordSent({
      seq,
      from: this.id,
      to: peer.id,
      offset,
      length: data.length,
      state,
      accepted,
    });
    return accepted;
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
