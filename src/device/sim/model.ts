/**
 * What a simulated vendor driver plugs into the shared driver core (device.ts): its state, its
 * data streams and its activity. The core owns the state machine, sessions, errno rules and
 * faults; a model only knows how to serialize and load its own state.
 */
import type { Hash } from 'node:crypto';
import type { MigState } from '../../uapi/index.ts';
import type { PciIds } from './config-space.ts';
import type { DmaEngine } from './dma.ts';
import type { SimP2pPort } from './p2p.ts';

/** The device side of a saving data session (vfio-uapi.md §6.1). */
export interface SavingStream {
  /**
   * Copies the next bytes of the stream into `buf`: the count, or 0 when there is nothing
   * right now (a temporary end in PRE_COPY*, which the fd turns into ENOMSG) or the whole state
   * was delivered (STOP_COPY: 0 forever).
   */
  read(buf: Uint8Array): number;
  /** PRECOPY_INFO (§6.2): unread initial bytes, and bytes that changed since they were read. */
  precopyInfo(): { initialBytes: number; dirtyBytes: number };
  /** The arc PRE_COPY* -> STOP_COPY: the final state follows what is still unread. */
  enterStopCopy(): void;
  /** Bytes a STOP_COPY entered now would still produce: unread + dirty + final records. */
  remainingBytes(): number;
}

/** The device side of a resuming data session (§6.3). */
export interface ResumingStream {
  /**
   * Consumes `buf` (any chunking); throws the errno of the refused write. Returns how many
   * milliseconds of device work the bytes cost (0 for none): the write(2) lasts that long.
   */
  write(buf: Uint8Array): number;
  /** RESUMING -> STOP: validate and load the state; throws EINVAL on incomplete/invalid data. */
  finish(): void;
}

/** How a model answers the DMA logging features (§7). */
export type DmaLoggingMode =
  /** a real tracker: DMA writes are logged at the chosen granule */
  | 'tracking'
  /** no logging ops: ENOTTY */
  | 'absent';

export interface SimModel {
  /** `mtty`, `nic`, `gpu`. */
  readonly kind: string;
  readonly pciIds: PciIds;
  readonly dmaLogging: DmaLoggingMode;
  /** The P2P window peers write into, when the model has one (p2p.ts). */
  readonly p2p?: SimP2pPort;
  /** Bytes of a STOP_COPY from STOP: the whole state, what `data-size=full` reports. */
  fullStateBytes(): number;
  /** Arcs RUNNING->PRE_COPY, RUNNING_P2P->PRE_COPY_P2P (`precopy`) and STOP->STOP_COPY. */
  openSaving(precopy: boolean): SavingStream;
  /** Arc STOP->RESUMING. */
  openResuming(): ResumingStream;
  /** The open session ended (arc, reset, close or ERROR): stop tracking for it. */
  closeSession(): void;
  /** Device activity over `ms` of simulated time; called only in running states. */
  run(ms: number, state: MigState, dma: DmaEngine): void;
  /** Internal state back to power-on contents (function-level reset). */
  powerOn(): void;
  /** Feeds the internal device state (not session buffers) into `hash`. */
  digest(hash: Hash): void;
}
