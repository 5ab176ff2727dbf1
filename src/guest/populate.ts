/**
 * Initial guest RAM content, as a guest that has booted and used its memory: every page is
 * written once the way a vCPU writes it (page-writer.ts), a share of them zeroed. Nothing is
 * logged: this is the state before migration starts, which the first RAM pass sends whole.
 */
import type { GuestMemory } from '../memory/guest-memory.ts';
import { nextStamp, writeDataPage, writeZeroPage } from './page-writer.ts';
import { Prng } from './prng.ts';

export interface PopulateOptions {
  /** Default 1. */
  readonly seed?: number;
  /** Share of pages left zero, in [0, 1]. Default 0.25. */
  readonly zeroShare?: number;
}

/** Salt of pages written by `populateRam` (vCPUs use their index + 1). */
export const POPULATE_SALT = 0;

export function populateRam(memory: GuestMemory, options: PopulateOptions = {}): void {
  const zeroShare = options.zeroShare ?? 0.25;
  if (!(zeroShare >= 0 && zeroShare <= 1)) {
    throw new RangeError(`populate: zeroShare ${zeroShare} is not in [0, 1]`);
  }
  const prng = new Prng(options.seed ?? 1);
  const zeroThreshold = zeroShare * 4294967296;
  let stamp = 0;
  for (const block of memory.blocks) {
    for (let page = 0; page < block.pages; page++) {
      const words = block.segmentWords(page);
      const at = block.wordOffsetInSegment(page);
      if (prng.nextU32() < zeroThreshold) {
        writeZeroPage(words, at);
      } else {
        stamp = nextStamp(stamp);
        writeDataPage(words, at, stamp, POPULATE_SALT, prng);
      }
    }
  }
}
