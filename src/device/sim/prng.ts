/**
 * A small seeded PRNG (xoshiro128**, seeded through splitmix32) so every simulated device run
 * is reproducible from its `seed` parameter. Not for cryptography.
 */
export class Prng {
  #s0 = 0;
  #s1 = 0;
  #s2 = 0;
  #s3 = 0;

  constructor(seed: number) {
    let x = seed >>> 0;
    const splitmix = (): number => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.#s0 = splitmix();
    this.#s1 = splitmix();
    this.#s2 = splitmix();
    this.#s3 = splitmix() | 1;
  }

  /** A uniformly distributed u32. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.#s1, 5), 7), 9) >>> 0;
    const t = this.#s1 << 9;
    this.#s2 ^= this.#s0;
    this.#s3 ^= this.#s1;
    this.#s1 ^= this.#s2;
    this.#s0 ^= this.#s3;
    this.#s2 ^= t;
    this.#s3 = rotl(this.#s3, 11);
    return result;
  }

  /** An integer in [0, n) for 0 < n <= 2^32 (modulo bias is irrelevant for a simulation). */
  below(n: number): number {
    if (n <= 0x1_0000_0000) return this.nextU32() % n;
    return (this.nextU32() * 0x1_0000_0000 + this.nextU32()) % n;
  }

  /** Fills `out` with random bytes. */
  fill(out: Uint8Array): void {
    let i = 0;
    for (; i + 4 <= out.length; i += 4) {
      const v = this.nextU32();
      out[i] = v & 0xff;
      out[i + 1] = (v >>> 8) & 0xff;
      out[i + 2] = (v >>> 16) & 0xff;
      out[i + 3] = v >>> 24;
    }
    if (i < out.length) {
      let v = this.nextU32();
      for (; i < out.length; i++, v >>>= 8) out[i] = v & 0xff;
    }
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/**
 * Turns a rate (units per second) and a time span into whole events, carrying the fraction
 * to the next span so that many small steps add up to the same total as one big one.
 */
export class RateAccumulator {
  #carry = 0;

  take(perSecond: number, ms: number): number {
    if (perSecond <= 0 || ms <= 0) return 0;
    const total = this.#carry + (perSecond * ms) / 1000;
    const whole = Math.floor(total);
    this.#carry = total - whole;
    return whole;
  }

  reset(): void {
    this.#carry = 0;
  }
}
