/**
 * The P2P window of a record-engine device: the last 4 KiB of its internal state, the part of
 * its BAR peers write into. It lives in the state on purpose: a peer's write changes what the
 * device must migrate, and the counters below travel with the state, so a destination can
 * tell from its loaded state which transactions it holds.
 *
 *   0    le32 magic "P2PB"
 *   4    le32 tx      transactions this device initiated (the next one's sequence number)
 *   8    le32 rx      transactions it accepted
 *   12   le32 0
 *   16   16 slots of 16 bytes: le32 initiator key (`p2pInitiatorKey`; 0 = free),
 *        le32 count, le32 last sequence number, le32 last offset
 *   272  landing zone: the data of peer writes, at the offset each write names
 *
 * Device activity never mutates this block (ChunkedState's reserved tail); every change is
 * reported as a chunk change, so the saving session re-sends it.
 */
import { p2pInitiatorKey } from '../p2p.ts';
import type { P2pReceivedCounter, SimP2pPort } from '../p2p.ts';
import type { ChunkedState } from './chunked-state.ts';

export const P2P_WINDOW_SIZE = 4096;
const MAGIC = 0x42503250; // "P2PB" little-endian
const TX = 4;
const RX = 8;
const SLOTS_AT = 16;
const SLOT_SIZE = 16;
export const P2P_MAILBOX_SLOTS = 16;
/** Where peer data lands, as an offset into the window. */
export const P2P_LANDING_OFFSET = SLOTS_AT + P2P_MAILBOX_SLOTS * SLOT_SIZE;
export const P2P_LANDING_SIZE = P2P_WINDOW_SIZE - P2P_LANDING_OFFSET;

export class P2pMailbox implements SimP2pPort {
  readonly #state: ChunkedState;
  readonly #base: number;
  readonly #dv: DataView;

  constructor(state: ChunkedState) {
    if (state.reservedTail < P2P_WINDOW_SIZE) {
      throw new Error(`the P2P window needs ${P2P_WINDOW_SIZE} reserved bytes at the state's end`);
    }
    this.#state = state;
    this.#base = state.size - P2P_WINDOW_SIZE;
    this.#dv = new DataView(state.bytes.buffer, state.bytes.byteOffset + this.#base);
  }

  /** Power-on contents: magic, zero counters, an empty landing zone. */
  reset(): void {
    this.#state.bytes.fill(0, this.#base, this.#base + P2P_WINDOW_SIZE);
    this.#dv.setUint32(0, MAGIC, true);
  }

  /** Transactions initiated so far. */
  get txCount(): number {
    return this.#dv.getUint32(TX, true);
  }

  /** Transactions accepted so far. */
  get rxCount(): number {
    return this.#dv.getUint32(RX, true);
  }

  /** Takes the next transmit sequence number (a state change). */
  nextTxSeq(): number {
    const seq = this.txCount;
    this.#dv.setUint32(TX, (seq + 1) >>> 0, true);
    this.#changed();
    return seq;
  }

  /**
   * Takes a peer's write into the state: its data at `offset` of the landing zone and the
   * initiator's counters. False (and nothing changed) when it does not fit the landing zone
   * or every slot belongs to another initiator.
   */
  accept(from: string, seq: number, offset: number, data: Uint8Array): boolean {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + data.length > P2P_LANDING_SIZE) {
      return false;
    }
    const slot = this.#slotFor(p2pInitiatorKey(from));
    if (slot < 0) return false;
    this.#state.bytes.set(data, this.#base + P2P_LANDING_OFFSET + offset);
    const at = SLOTS_AT + slot * SLOT_SIZE;
    this.#dv.setUint32(at + 4, (this.#dv.getUint32(at + 4, true) + 1) >>> 0, true);
    this.#dv.setUint32(at + 8, seq >>> 0, true);
    this.#dv.setUint32(at + 12, offset, true);
    this.#dv.setUint32(RX, (this.rxCount + 1) >>> 0, true);
    this.#changed();
    return true;
  }

  /** The per-initiator counters as the state holds them. */
  received(): P2pReceivedCounter[] {
    const out: P2pReceivedCounter[] = [];
    for (let s = 0; s < P2P_MAILBOX_SLOTS; s++) {
      const at = SLOTS_AT + s * SLOT_SIZE;
      const key = this.#dv.getUint32(at, true);
      if (key === 0) continue;
      out.push({
        key,
        count: this.#dv.getUint32(at + 4, true),
        lastSeq: this.#dv.getUint32(at + 8, true),
      });
    }
    return out;
  }

  /** The slot of `key`, claiming a free one on first use; -1 when all are taken. */
  #slotFor(key: number): number {
    for (let s = 0; s < P2P_MAILBOX_SLOTS; s++) {
      const at = SLOTS_AT + s * SLOT_SIZE;
      const k = this.#dv.getUint32(at, true);
      if (k === key) return s;
      if (k === 0) {
        this.#dv.setUint32(at, key, true);
        return s;
      }
    }
    return -1;
  }

  #changed(): void {
    this.#state.noteWrite(this.#base, P2P_WINDOW_SIZE);
  }
}
