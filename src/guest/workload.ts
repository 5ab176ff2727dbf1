/**
 * What the vCPUs do: a dirtying workload. The rate is the *write* rate of the whole VM, in MiB/s
 * of 4 KiB pages (one page write counts 4 KiB), split evenly over the vCPUs. Re-writing a page
 * that is already dirty counts toward the rate but not toward newly dirty pages, so a `hot`
 * workload shows a lower dirty-page rate in the migration bitmap than its write rate, as a real
 * guest does.
 *
 * Patterns, over the guest's RAM seen as one run of pages (blocks in order):
 * - `uniform`: every vCPU picks pages uniformly over all RAM;
 * - `hot`: every vCPU picks uniformly inside one window of `sizeMiB` at `offsetMiB`;
 * - `sequential`: RAM is cut into one slice per vCPU; each vCPU sweeps its slice in order and
 *   wraps around.
 */
import { MiB, TARGET_PAGE_SIZE } from '../memory/page.ts';
import type { Prng } from './prng.ts';

export type DirtyPattern =
  | { readonly kind: 'uniform' }
  | { readonly kind: 'hot'; readonly sizeMiB: number; readonly offsetMiB?: number }
  | { readonly kind: 'sequential' };

export interface WorkloadConfig {
  /** MiB/s of page writes for the whole VM; 0 idles, 'max' writes as fast as it can. */
  readonly dirtyRateMiBps: number | 'max';
  readonly pattern: DirtyPattern;
  /** Share of writes that zero the whole page, in [0, 1]. Default 0. */
  readonly zeroShare?: number;
  /** Seed of every vCPU's stream (page choice and content). Default 1. */
  readonly seed?: number;
  /** Pages each vCPU writes before it idles (for deterministic tests). Default: no limit. */
  readonly pageBudget?: number;
}

/** A checked workload with defaults filled in. */
export interface Workload {
  readonly dirtyRateMiBps: number | 'max';
  readonly pattern: DirtyPattern;
  readonly zeroShare: number;
  readonly seed: number;
  readonly pageBudget: number;
}

export const PAGES_PER_MIB = MiB / TARGET_PAGE_SIZE;

/** Validates `config` against a guest of `totalPages` pages and `vcpus` vCPUs. */
export function checkWorkload(config: WorkloadConfig, totalPages: number, vcpus: number): Workload {
  const bad = (field: string, value: unknown, want: string): never => {
    const shown = typeof value === 'number' ? String(value) : JSON.stringify(value);
    throw new RangeError(`workload.${field}: ${shown} is not ${want}`);
  };
  const rate = config.dirtyRateMiBps;
  if (rate !== 'max' && !(typeof rate === 'number' && Number.isFinite(rate) && rate >= 0)) {
    bad('dirtyRateMiBps', rate, "a finite number >= 0 or 'max'");
  }
  const zeroShare = config.zeroShare ?? 0;
  if (!(zeroShare >= 0 && zeroShare <= 1)) bad('zeroShare', zeroShare, 'in [0, 1]');
  const seed = config.seed ?? 1;
  if (!Number.isInteger(seed)) bad('seed', seed, 'an integer');
  const pageBudget = config.pageBudget ?? Infinity;
  if (!(pageBudget === Infinity || (Number.isSafeInteger(pageBudget) && pageBudget >= 0))) {
    bad('pageBudget', pageBudget, 'a natural number');
  }
  const p = config.pattern as DirtyPattern | undefined;
  switch (p?.kind) {
    case 'uniform':
      break;
    case 'sequential':
      if (totalPages < vcpus) {
        bad('pattern', p, `possible: ${vcpus} vCPUs need at least as many pages`);
      }
      break;
    case 'hot': {
      const offset = p.offsetMiB ?? 0;
      if (!(p.sizeMiB > 0 && Number.isInteger(p.sizeMiB * PAGES_PER_MIB))) {
        bad('pattern.sizeMiB', p.sizeMiB, 'a positive whole number of pages');
      }
      if (!(offset >= 0 && Number.isInteger(offset * PAGES_PER_MIB))) {
        bad('pattern.offsetMiB', offset, 'a natural whole number of pages');
      }
      if ((offset + p.sizeMiB) * PAGES_PER_MIB > totalPages) {
        bad('pattern', p, `inside the guest's ${totalPages / PAGES_PER_MIB} MiB of RAM`);
      }
      break;
    }
    default:
      bad(
        'pattern.kind',
        (p as { kind?: unknown } | undefined)?.kind,
        "'uniform', 'hot' or 'sequential'",
      );
  }
  return { dirtyRateMiBps: rate, pattern: config.pattern, zeroShare, seed, pageBudget };
}

/** Pages per second one vCPU writes, or Infinity for 'max'. */
export function vcpuPageRate(workload: Workload, vcpus: number): number {
  const rate = workload.dirtyRateMiBps;
  return rate === 'max' ? Infinity : (rate * PAGES_PER_MIB) / vcpus;
}

/**
 * The page sequence of one vCPU, as indices into the guest's pages (blocks in order). Uses the
 * vCPU's PRNG, so a seed fixes the sequence.
 */
export class PagePicker {
  readonly #prng: Prng;
  readonly #start: number;
  readonly #span: number;
  readonly #sequential: boolean;
  #cursor = 0;

  constructor(pattern: DirtyPattern, totalPages: number, index: number, vcpus: number, prng: Prng) {
    this.#prng = prng;
    this.#sequential = pattern.kind === 'sequential';
    if (pattern.kind === 'hot') {
      this.#start = (pattern.offsetMiB ?? 0) * PAGES_PER_MIB;
      this.#span = pattern.sizeMiB * PAGES_PER_MIB;
    } else if (pattern.kind === 'sequential') {
      this.#start = Math.floor((index * totalPages) / vcpus);
      this.#span = Math.floor(((index + 1) * totalPages) / vcpus) - this.#start;
    } else {
      this.#start = 0;
      this.#span = totalPages;
    }
  }

  next(): number {
    if (!this.#sequential) return this.#start + this.#prng.below(this.#span);
    const page = this.#start + this.#cursor;
    if (++this.#cursor === this.#span) this.#cursor = 0;
    return page;
  }
}
