/**
 * The guest side of a vIOMMU: the guest OS's DMA API for the VFIO devices, reduced to what
 * migration notices. It keeps `windows` DMA windows mapped, each `windowSize` bytes of IOVA
 * onto a random stretch of guest RAM, and while the guest runs it retires the oldest window
 * and maps a fresh one every `remapIntervalMs` — so IOVAs are unmapped during pre-copy, and
 * later reused for other guest pages, as a NIC driver recycling receive buffers does.
 */
import { TARGET_PAGE_SIZE } from '../page.ts';
import type { GuestIommu } from './viommu.ts';

export interface ViommuDriverOptions {
  /** DMA windows kept mapped (default 8). */
  readonly windows?: number;
  /** Bytes per window, a multiple of 4 KiB (default 256 KiB). */
  readonly windowSize?: number;
  /** A window is replaced this often while the guest runs; 0 never (default 20 ms). */
  readonly remapIntervalMs?: number;
  /** Start of the IOVA space the windows cycle through (default 1 GiB). */
  readonly iovaBase?: number;
  readonly seed?: number;
  /** `runstate_is_running`: the driver only acts while the guest runs. */
  readonly isRunning: () => boolean;
}

/** The IOVA space holds four generations of windows before an IOVA comes back. */
const IOVA_GENERATIONS = 4;

export class ViommuDriver {
  readonly viommu: GuestIommu;
  readonly windows: number;
  readonly windowSize: number;
  readonly remapIntervalMs: number;
  readonly iovaBase: number;
  readonly #isRunning: () => boolean;
  /** Mapped windows, oldest first (their IOVAs). */
  #live: number[] = [];
  #nextIova: number;
  #rng: number;
  #timer: NodeJS.Timeout | null = null;
  /** Windows retired and replaced so far. */
  remaps = 0;

  constructor(viommu: GuestIommu, opts: ViommuDriverOptions) {
    this.viommu = viommu;
    this.windows = opts.windows ?? 8;
    this.windowSize = opts.windowSize ?? 256 << 10;
    this.remapIntervalMs = opts.remapIntervalMs ?? 20;
    this.iovaBase = opts.iovaBase ?? 1 << 30;
    this.#isRunning = opts.isRunning;
    this.#rng = (opts.seed ?? 1) >>> 0 || 1;
    this.#nextIova = this.iovaBase;
    if (this.windowSize <= 0 || this.windowSize % TARGET_PAGE_SIZE !== 0 || this.windows < 1) {
      throw new RangeError(
        `vIOMMU driver: ${this.windows} windows of ${this.windowSize} bytes (need at least one, 4K multiples)`,
      );
    }
    const ram = viommu.memory.mappings.reduce((n, m) => Math.max(n, m.length), 0);
    if (this.windowSize > ram) {
      throw new RangeError(
        `vIOMMU driver: a ${this.windowSize}-byte window does not fit guest RAM`,
      );
    }
  }

  /** The IOVA space the windows cycle through. */
  get iovaSpace(): number {
    return this.windows * this.windowSize * IOVA_GENERATIONS;
  }

  /** A freshly booted guest: maps the initial windows. */
  populate(): void {
    while (this.#live.length < this.windows) this.#mapWindow();
  }

  /**
   * A migrated guest: takes over the windows the loaded vIOMMU state has mapped. They are a
   * run of consecutive slots of the IOVA cycle; the newest is the one whose successor slot is
   * free, and the oldest comes first after it.
   */
  adopt(): void {
    const mine = this.viommu.mappings
      .map((m) => m.iova)
      .filter((iova) => iova >= this.iovaBase && iova < this.iovaBase + this.iovaSpace);
    const live = new Set(mine);
    const newest = mine.find((iova) => !live.has(this.#wrap(iova + this.windowSize)));
    if (newest === undefined) {
      this.#live = [];
      return;
    }
    this.#nextIova = this.#wrap(newest + this.windowSize);
    const age = (iova: number): number => (iova - this.#nextIova + this.iovaSpace) % this.iovaSpace;
    this.#live = mine.sort((a, b) => age(a) - age(b));
  }

  /** Retires the oldest window and maps a new one. */
  remapOne(): void {
    const oldest = this.#live.shift();
    if (oldest !== undefined) this.viommu.unmap(oldest, this.windowSize);
    this.#mapWindow();
    this.remaps++;
  }

  /** Remaps on a timer while the guest runs (unref'ed; `stop` ends it). */
  start(): void {
    this.stop();
    if (this.remapIntervalMs <= 0) return;
    this.#timer = setInterval(() => {
      if (this.#isRunning()) this.remapOne();
    }, this.remapIntervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  #mapWindow(): void {
    const iova = this.#nextIova;
    this.#nextIova = this.#wrap(iova + this.windowSize);
    this.viommu.map(iova, this.windowSize, this.#randomGpa());
    this.#live.push(iova);
  }

  #wrap(iova: number): number {
    return this.iovaBase + ((iova - this.iovaBase) % this.iovaSpace);
  }

  /** A page-aligned stretch of `windowSize` bytes inside one RAM mapping, at random. */
  #randomGpa(): number {
    const fits = this.viommu.memory.mappings.filter((m) => m.length >= this.windowSize);
    const m = fits[this.#next() % fits.length]!;
    const slots = (m.length - this.windowSize) / TARGET_PAGE_SIZE + 1;
    return m.gpa + (this.#next() % slots) * TARGET_PAGE_SIZE;
  }

  /** xorshift32. */
  #next(): number {
    let x = this.#rng;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#rng = x >>> 0;
    return this.#rng;
  }
}
