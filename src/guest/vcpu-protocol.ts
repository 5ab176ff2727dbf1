/**
 * The stop/park protocol between the main thread and the vCPU threads, on shared words.
 *
 * One command word, written only by the main thread: `(epoch << 2) | op`. Every command gets a
 * new epoch, so no two commands share a value. A vCPU reads it after every page write. On
 * PAUSE it publishes its counters, stores the command word it saw into its own ack word, and
 * sleeps (`Atomics.wait`) until the command word changes. The main thread's pause is complete
 * when every ack holds that PAUSE command (or a later one): each ack is stored after its
 * vCPU's last write, and a parked vCPU writes nothing until the word says RUN.
 *
 * Epochs are what make a quick resume-then-pause safe: an ack left over from an earlier pause
 * does not count for a new one, even if a vCPU had not yet noticed the resume in between.
 */
import type { SharedRamBlock } from '../memory/ram-block.ts';
import type { Workload } from './workload.ts';

export const VcpuOp = { RUN: 0, PAUSE: 1, EXIT: 2 } as const;
export type VcpuOp = (typeof VcpuOp)[keyof typeof VcpuOp];

/** Ack of a vCPU thread that died: it writes nothing any more, so it counts as parked. */
export const ACK_DEAD = -1;
/** Ack before a vCPU has parked for the first time. */
export const ACK_NONE = -2;

const EPOCH_MASK = 0x1fff_ffff;

export function commandWord(epoch: number, op: VcpuOp): number {
  return ((epoch & EPOCH_MASK) << 2) | op;
}

export function opOf(word: number): VcpuOp {
  return (word & 3) as VcpuOp;
}

export function epochOf(word: number): number {
  return word >>> 2;
}

/** True once `ack` satisfies a pause issued as `command`. */
export function ackCovers(ack: number, command: number): boolean {
  return (
    ack === ACK_DEAD || (ack >= 0 && opOf(ack) === VcpuOp.PAUSE && epochOf(ack) >= epochOf(command))
  );
}

/** Per-vCPU counters (BigInt64Array slots), published by the vCPU after each batch. */
export const Counter = { PAGES: 0, ZERO_PAGES: 1 } as const;
export const COUNTERS_PER_VCPU = 2;

/** workerData of a vCPU thread. */
export interface VcpuThreadData {
  readonly [key: string]: unknown;
  readonly index: number;
  readonly count: number;
  readonly blocks: readonly SharedRamBlock[];
  readonly workload: Workload;
  /** Int32Array(1): the command word. */
  readonly command: SharedArrayBuffer;
  /** Int32Array(count): ack words. */
  readonly acks: SharedArrayBuffer;
  /** Int32Array(count): non-zero asks the vCPU to fail (fault injection). */
  readonly faults: SharedArrayBuffer;
  /** BigInt64Array(count * COUNTERS_PER_VCPU). */
  readonly counters: SharedArrayBuffer;
}
