/**
 * Buffers for the device-state packets a destination's channels receive, used again once the
 * entry that kept one is done with it. A fresh MiB per packet costs the destination page
 * faults, the kernel zeroing those pages and the garbage collector's major cycles (together
 * about a third of its CPU while device state streams in); QEMU's receiver copies each packet
 * into a buffer of its own and frees it after the write, which malloc recycles the same way.
 *
 * A packet up to `capacity` bytes gets a pooled buffer; a larger one (rare: a device's
 * config, or a source with bigger packets) gets its own. At most `maxFree` buffers wait in
 * the pool, so it never holds more than `capacity × maxFree` bytes.
 */

/** Bytes lent for one packet, and how to give them back (once; later calls do nothing). */
export interface LentBuffer {
  readonly bytes: Buffer;
  readonly release: () => void;
}

/** QEMU's VFIO packets carry at most 1 MiB of data, behind a 12-byte header. */
export const POOLED_PACKET_CAPACITY = (1 << 20) + 4096;
const MAX_FREE = 16;

export class PacketPool {
  readonly #free: Buffer[] = [];
  readonly #capacity: number;
  readonly #maxFree: number;

  constructor(capacity = POOLED_PACKET_CAPACITY, maxFree = MAX_FREE) {
    this.#capacity = capacity;
    this.#maxFree = maxFree;
  }

  /** Buffers waiting to be lent again. */
  get free(): number {
    return this.#free.length;
  }

  /** `size` bytes (their content undefined until written). */
  take(size: number): LentBuffer {
    if (size > this.#capacity) return { bytes: Buffer.allocUnsafe(size), release: () => undefined };
    const whole = this.#free.pop() ?? Buffer.allocUnsafe(this.#capacity);
    let lent = true;
    return {
      bytes: whole.subarray(0, size),
      release: () => {
        if (!lent) return;
        lent = false;
        if (this.#free.length < this.#maxFree) this.#free.push(whole);
      },
    };
  }
}
