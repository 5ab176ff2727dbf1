/**
 * A small seeded PRNG for workloads: xorshift32 with its seed scrambled by MurmurHash3's
 * finalizer, so nearby seeds (vCPU 0, 1, 2 ...) give unrelated streams. Not cryptographic;
 * a few integer ops per number and no allocation, which is what a page-dirtying loop needs.
 */
export class Prng {
  #s: number;

  constructor(seed: number) {
    let h = seed >>> 0;
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    h ^= h >>> 16;
    this.#s = h === 0 ? 0x6d2b79f5 : h; // xorshift must not start at 0
  }

  /** Uniform in [0, 2^32). */
  nextU32(): number {
    let x = this.#s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#s = x;
    return x >>> 0;
  }

  /** Uniform in [0, n) for 0 < n < 2^31 (multiply-shift, no modulo bias worth noting). */
  below(n: number): number {
    return Math.floor((this.nextU32() / 4294967296) * n);
  }
}

/** The seed of vCPU `index`'s stream for a workload seed. */
export function vcpuSeed(seed: number, index: number): number {
  return (seed ^ Math.imul(index + 1, 0x9e3779b9)) >>> 0;
}
