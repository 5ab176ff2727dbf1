/**
 * The internal state of a record-engine device: `stateSize` bytes in fixed chunks. Activity
 * rewrites random 4 KiB blocks and reports each changed chunk, which is what the saving
 * session's dirty tracking listens to. A reserved tail (the P2P window) is left out of the
 * random rewrites; whoever owns it reports its changes through `noteWrite`.
 */
import { Prng } from '../prng.ts';

/** Unit of a state change made by device activity. */
export const MUTATION_BLOCK = 4096;

export class ChunkedState {
  readonly bytes: Uint8Array;
  readonly chunkSize: number;
  readonly chunkCount: number;
  /** Bytes at the end that activity never rewrites (0 or a multiple of 4 KiB). */
  readonly reservedTail: number;
  /** Told about every chunk that changes (the saving session's dirty tracker). */
  onChange: ((chunk: number) => void) | null = null;
  readonly #blockWords: number;
  readonly #words: Uint32Array;

  constructor(stateSize: number, chunkSize: number, reservedTail = 0) {
    if (chunkSize % MUTATION_BLOCK !== 0 || stateSize % chunkSize !== 0 || stateSize === 0) {
      throw new Error(
        `state-size ${stateSize} must be a non-zero multiple of chunk-size ${chunkSize}, itself a multiple of 4K`,
      );
    }
    if (reservedTail % MUTATION_BLOCK !== 0 || reservedTail < 0 || reservedTail >= stateSize) {
      throw new Error(
        `a reserved tail of ${reservedTail} bytes does not fit a ${stateSize}-byte state in 4K blocks`,
      );
    }
    this.reservedTail = reservedTail;
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
    const mutableBlocks = (this.bytes.length - this.reservedTail) / MUTATION_BLOCK;
    const mutableChunks = Math.ceil(mutableBlocks / blocksPerChunk);
    for (let i = 0; i < chunks; i++) {
      const first = rng.below(mutableChunks) * blocksPerChunk;
      // In the chunk where the reserved tail starts, only the blocks before it are picked.
      const block =
        first + (rng.below(blocksPerChunk) % Math.min(blocksPerChunk, mutableBlocks - first));
      const base = block * this.#blockWords;
      // A handful of words is enough to change the block; the cost stays per block, not per byte.
      for (let w = 0; w < 8; w++) this.#words[base + rng.below(this.#blockWords)] = rng.nextU32();
      this.onChange?.(Math.floor(block / blocksPerChunk));
    }
  }

  /** Reports the chunks of [offset, offset+length) as changed. */
  noteWrite(offset: number, length: number): void {
    if (length <= 0 || this.onChange === null) return;
    const last = Math.floor((offset + length - 1) / this.chunkSize);
    for (let c = Math.floor(offset / this.chunkSize); c <= last; c++) this.onChange(c);
  }
}
