/**
 * The internal state of a record-engine device: `stateSize` bytes in fixed chunks. Activity
 * rewrites random 4 KiB blocks and reports each changed chunk, which is what the saving
 * session's dirty tracking listens to.
 */
import { Prng } from '../prng.ts';

/** Unit of a state change made by device activity. */
export const MUTATION_BLOCK = 4096;

export class ChunkedState {
  readonly bytes: Uint8Array;
  readonly chunkSize: number;
  readonly chunkCount: number;
  /** Told about every chunk that changes (the saving session's dirty tracker). */
  onChange: ((chunk: number) => void) | null = null;
  readonly #blockWords: number;
  readonly #words: Uint32Array;

  constructor(stateSize: number, chunkSize: number) {
    if (chunkSize % MUTATION_BLOCK !== 0 || stateSize % chunkSize !== 0 || stateSize === 0) {
      throw new Error(
        `state-size ${stateSize} must be a non-zero multiple of chunk-size ${chunkSize}, itself a multiple of 4K`,
      );
    }
    this.bytes = new Uint8Array(stateSize);
    this.#words = new Uint32Array(this.bytes.buffer);
    this.chunkSize = chunkSize;
    this.chunkCount = stateSize / chunkSize;
    this.#blockWords = MUTATION_BLOCK / 4;
  }

  get size(): number {
    return this.bytes.length;
  }

  /**
   * Power-on contents from `seed`: one random chunk pattern copied everywhere, each chunk
   * stamped with its index and a random word, so chunks differ without paying for a PRNG pass
   * over hundreds of MiB.
   */
  powerOn(seed: number): void {
    const rng = new Prng(seed ^ 0x5eed);
    const pattern = this.bytes.subarray(0, this.chunkSize);
    rng.fill(pattern);
    for (let c = 1; c < this.chunkCount; c++)
      this.bytes.copyWithin(c * this.chunkSize, 0, this.chunkSize);
    const chunkWords = this.chunkSize / 4;
    for (let c = 0; c < this.chunkCount; c++) {
      this.#words[c * chunkWords] = c;
      this.#words[c * chunkWords + 1] = rng.nextU32();
    }
  }

  /** Rewrites one 4 KiB block (a few random words) in each of `chunks` random chunks. */
  mutate(rng: Prng, chunks: number): void {
    const blocksPerChunk = this.chunkSize / MUTATION_BLOCK;
    const totalChunks = this.bytes.length / this.chunkSize;
    for (let i = 0; i < chunks; i++) {
      const block = rng.below(totalChunks) * blocksPerChunk + rng.below(blocksPerChunk);
      const base = block * this.#blockWords;
      // A handful of words is enough to change the block; the cost stays per block, not per byte.
      for (let w = 0; w < 8; w++) this.#words[base + rng.below(this.#blockWords)] = rng.nextU32();
      this.onChange?.(Math.floor(block / blocksPerChunk));
    }
  }
}
