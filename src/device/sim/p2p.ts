/**
 * Peer-to-peer DMA between simulated devices (vfio-uapi.md §2, qemu-migration.md §3.2): a
 * device writes into a window of a peer's BAR, i.e. into the peer's internal state. Both sides
 * record every transaction with the initiator's sequence number, so a test can show that no
 * device initiated one while P2P-quiesced and that every write a target accepted is in the
 * state the target migrated (its mailbox counters travel with that state, see
 * records/p2p-mailbox.ts).
 */
import { crc32 } from 'node:zlib';
import type { MigState } from '../../uapi/index.ts';

/** Bytes of one P2P write the activity issues (a cache-line sized doorbell/descriptor). */
export const P2P_WRITE_SIZE = 64;

/** The target side of the seam: a device whose BAR window takes peer writes. */
export interface P2pPeer {
  readonly id: string;
  /**
   * An incoming write of `data` at `offset` of the window, the initiator's `seq`-th
   * transaction. True when the device took it into its state; false when it could not (not
   * running, no window, outside the window): the write is lost, and the log says so.
   */
  p2pWrite(from: string, seq: number, offset: number, data: Uint8Array): boolean;
}

/** One transaction as one side saw it. */
export interface P2pTransaction {
  /** The initiator's sequence number (its transmit counter, part of its state). */
  readonly seq: number;
  readonly from: string;
  readonly to: string;
  /** Offset in the target's window. */
  readonly offset: number;
  readonly length: number;
  /** The recording side's device state: the initiator's when it issued, the target's on arrival. */
  readonly state: MigState;
  /** The target took the write into its state. */
  readonly accepted: boolean;
}

/** What a device's state says it received from one initiator. */
export interface P2pReceivedCounter {
  /** crc32 of the initiator's id (`p2pInitiatorKey`). */
  readonly key: number;
  readonly count: number;
  readonly lastSeq: number;
}

/** What a model with a P2P window offers the device core (records/p2p-mailbox.ts). */
export interface SimP2pPort {
  /** Transactions this device initiated so far (its state's transmit counter). */
  readonly txCount: number;
  /** Takes the next transmit sequence number (a state change). */
  nextTxSeq(): number;
  /** Takes a peer's write into the state; false (nothing changed) when it does not fit. */
  accept(from: string, seq: number, offset: number, data: Uint8Array): boolean;
  /** The per-initiator counters as the state holds them. */
  received(): P2pReceivedCounter[];
}

/** The key of an initiator in a P2P window: crc32 of its id, never 0 (0 marks a free slot). */
export function p2pInitiatorKey(id: string): number {
  return crc32(Buffer.from(id, 'utf8')) >>> 0 || 1;
}

/** Most transactions kept per direction; older ones are dropped (and counted). */
export const P2P_LOG_LIMIT = 1 << 16;

/** One device's record of the P2P transactions it initiated and received. */
export class P2pLog {
  readonly sent: P2pTransaction[] = [];
  readonly received: P2pTransaction[] = [];
  /** Entries dropped from the front of `sent` / `received` to respect the limit. */
  droppedSent = 0;
  droppedReceived = 0;

  recordSent(t: P2pTransaction): void {
    this.droppedSent += append(this.sent, t);
  }

  recordReceived(t: P2pTransaction): void {
    this.droppedReceived += append(this.received, t);
  }

  clear(): void {
    this.sent.length = 0;
    this.received.length = 0;
    this.droppedSent = 0;
    this.droppedReceived = 0;
  }
}

/** Appends `t` to `list`, dropping its oldest entry at the limit; returns how many it dropped. */
function append(list: P2pTransaction[], t: P2pTransaction): number {
  list.push(t);
  if (list.length <= P2P_LOG_LIMIT) return 0;
  list.shift();
  return 1;
}
