/**
 * The control block shared by the RAM prefaulter (prefault.ts) and its thread
 * (prefault-thread.ts): a few int32 words in a SharedArrayBuffer. The main thread writes the
 * range to touch, then bumps SEQ and notifies; the thread sleeps on SEQ when it has nothing
 * left to touch. A torn read of the range only touches a page too many or too few: touching
 * never changes guest memory.
 */
import type { SharedRamBlock } from '../memory/ram-block.ts';

export const PrefaultWord = {
  /** Bumped whenever the range changes or the thread must quit. */
  SEQ: 0,
  /** Index of the RAM block in the memory's block list. */
  BLOCK: 1,
  /** First page the thread may touch: everything before it was already written. */
  FROM: 2,
  /** Pages below this one may be touched. */
  TO: 3,
  /** Non-zero: the thread ends. */
  QUIT: 4,
  /** Pages touched so far (written by the thread). */
  TOUCHED: 5,
} as const;

export const PREFAULT_CONTROL_WORDS = 8;

export interface PrefaultThreadData {
  readonly blocks: readonly SharedRamBlock[];
  readonly control: SharedArrayBuffer;
}
