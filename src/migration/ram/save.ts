/**
 * The save side of QEMU's RAM migration (migration/ram.c; qemu-migration.md §2.2, §2.3,
 * §3.5): every page starts dirty, dirty logging runs while the guest is migrated, each pass
 * sends the dirty pages it finds — zero pages as ZERO records, the others whole — and every
 * section ends with EOS.
 *
 * The scan resumes where the last pass stopped (QEMU's last_seen_block), so a rate-limited
 * pass does not favour low addresses. A pass stops when the window's budget is spent, when no
 * page is dirty, or after ~50 ms (the clock is read every 64 pages).
 *
 * Pages go in runs: the consecutive dirty pages of one bitmap word (up to 32, within one
 * segment) are cleared together, tested for zero with one compare, and the normal ones among
 * them are laid out by `putPageRun` with one native copy out of guest RAM. The records are
 * exactly those of one page at a time; nothing is allocated per page (Node's Buffer#copy makes
 * a view object per call, so one call per page would), and the copy out of shared memory goes
 * word by word whatever the stream alignment. Under a bandwidth limit a run is kept to an
 * eighth of a window's budget, so the limit holds as closely as page by page.
 *
 * With multifd (qemu-migration.md §4.3) the pages go in RAM packets on the multifd channels
 * (multifd/ram-queue.ts) and the main channel only carries the block list, the section ends
 * and RAM_SAVE_FLAG_MULTIFD_FLUSH: at setup, and each time the scan wraps around the end of
 * RAM, every channel writes a SYNC packet and the main channel says so (QEMU ≥ 8.0's
 * per-round sync). A page is sent at most once per round, and the destination lands a whole
 * round before it reads on, so a newer copy of a page never lands before an older one. Zero
 * pages travel in the packets' zero lists ("multifd" detection) or as ZERO records on the
 * main channel ("legacy").
 */
import type { GuestMemory } from '../../memory/guest-memory.ts';
import type { RamBlock } from '../../memory/ram-block.ts';
import type { MigrationClock } from '../clock.ts';
import type { MigrationEvents } from '../events.ts';
import type { MigrationStats } from '../migration-stats.ts';
import { MultifdRamQueue } from '../multifd/ram-queue.ts';
import type { MultifdSendState } from '../multifd/send.ts';
import type { MigrationOptions } from '../options/index.ts';
import type { PendingSizes, RateLimit } from '../savevm/handlers.ts';
import type { QEMUFileWriter } from '../stream/index.ts';
import { RamRecordEncoder } from './format.ts';

/** `MAX_WAIT`: longest pass of saveLiveIterate, in ms. */
export const RAM_SAVE_MAX_WAIT_MS = 50;
/** The clock is read once per this many pages. */
const CLOCK_CHECK_PAGES = 64;
/** Most pages sent as one run: one word of the dirty bitmap. */
const MAX_RUN_PAGES = 32;
/** The dirty-pages-rate is measured over periods of at least this long (ms). */
const DIRTY_RATE_PERIOD_MS = 1000;

/** What RAM needs of the outgoing migration it takes part in. */
export interface RamSaveEnvironment {
  readonly stats: MigrationStats;
  readonly clock: MigrationClock;
  readonly events: MigrationEvents;
  readonly options: MigrationOptions;
  /** `runstate_is_running`: RAM bytes count as precopy while it runs, as downtime after. */
  guestRunning(): boolean;
  /** The multifd channels of this migration, or null without the capability. */
  readonly multifdSend?: MultifdSendState | null;
}

export class RamSaveState {
  readonly #memory: GuestMemory;
  readonly #env: RamSaveEnvironment;
  readonly #enc = new RamRecordEncoder();
  readonly #pageSize = this.#enc.pageSize;
  /** The run being sent: `putPageRun` copies its pages through this (no closure per run). */
  #runBlock: RamBlock | null = null;
  #runPage = 0;
  readonly #copyRun = (dst: Buffer, dstOffset: number, pages: number): void => {
    this.#runBlock!.copyPagesTo(this.#runPage, pages, dst, dstOffset);
    this.#runPage += pages;
  };
  /** The scan cursor: a block index and the page to look at next. */
  #blockIndex = 0;
  #page = 0;
  #loggingStarted = false;
  /** Pages go to the multifd channels this migration. */
  #multifd: MultifdRamQueue | null = null;
  /** The scan went past the last block since the last sync (a round ended). */
  #wrapped = false;
  #timeLastBitmapSync: number | null = null;
  #dirtyPagesPeriod = 0;

  constructor(memory: GuestMemory, env: RamSaveEnvironment) {
    this.#memory = memory;
    this.#env = env;
  }

  /**
   * `ram_save_setup`: every page dirty, dirty logging on, a first sync; then the MEM_SIZE
   * block list and EOS (QEMU 7.2–10 write nothing else without multifd).
   */
  async setup(f: QEMUFileWriter): Promise<void> {
    const before = f.bytesWritten;
    for (const b of this.#memory.blocks) b.bitmap.setDirty(0, b.pages);
    this.#blockIndex = 0;
    this.#page = 0;
    this.#wrapped = false;
    this.#timeLastBitmapSync = null;
    this.#dirtyPagesPeriod = 0;
    const channels = this.#env.multifdSend ?? null;
    this.#multifd = channels === null ? null : new MultifdRamQueue(channels);
    await this.#memory.dirtyLogListeners.start();
    this.#loggingStarted = true;
    await this.#bitmapSync(false);
    this.#enc.putMemSize(
      f,
      this.#memory.blocks.map((b) => ({ idstr: b.idstr, usedLength: b.usedLength })),
    );
    // The destination's channels wait at this first SYNC until its RAM load is set up.
    if (this.#multifd !== null) await this.#flushAndSync(f);
    this.#enc.putEos(f);
    this.#account(f.bytesWritten - before);
  }

  /** `ram_save_iterate`: one pass; true when no dirty page was left. */
  async iterate(f: QEMUFileWriter, rateLimit: RateLimit): Promise<boolean> {
    const before = f.bytesWritten;
    const clock = this.#env.clock;
    const t0 = clock.now();
    const detectZero = this.#detectZero();
    const maxRun = this.#maxRun();
    this.#enc.resetBlock();
    let done = false;
    let pages = 0;
    let clockAt = CLOCK_CHECK_PAGES;
    for (;;) {
      if (rateLimit.exceeded()) break;
      const found = this.#findDirtyPage();
      await this.#endOfRound(f);
      if (!found) {
        done = true;
        break;
      }
      pages += await this.#send(f, detectZero, maxRun);
      if (f.needsDrain) await f.ready();
      if (pages >= clockAt) {
        clockAt = pages + CLOCK_CHECK_PAGES;
        if (clock.now() - t0 > RAM_SAVE_MAX_WAIT_MS) break;
      }
    }
    this.#enc.putEos(f);
    this.#account(f.bytesWritten - before);
    return done;
  }

  /** `ram_save_complete`: the final sync, then every dirty page, unlimited; EOS. */
  async complete(f: QEMUFileWriter): Promise<void> {
    const before = f.bytesWritten;
    await this.#bitmapSync(true);
    const detectZero = this.#detectZero();
    this.#enc.resetBlock();
    for (;;) {
      const found = this.#findDirtyPage();
      // Finding nothing goes once around RAM: the last round's pages are synced here.
      await this.#endOfRound(f);
      if (!found) break;
      await this.#send(f, detectZero, MAX_RUN_PAGES);
      if (f.needsDrain) await f.ready();
    }
    this.#enc.putEos(f);
    this.#account(f.bytesWritten - before);
  }

  /** `ram_state_pending_estimate`: the dirty bytes known now. */
  pendingEstimate(pending: PendingSizes): void {
    pending.mustPrecopy += this.remainingBytes();
  }

  /** `ram_state_pending_exact`: sync the dirty logs first. */
  async pendingExact(pending: PendingSizes): Promise<void> {
    await this.#bitmapSync(false);
    pending.mustPrecopy += this.remainingBytes();
  }

  /** `ram_save_cleanup`: dirty logging off. */
  async cleanup(): Promise<void> {
    this.#multifd = null;
    if (!this.#loggingStarted) return;
    this.#loggingStarted = false;
    await this.#memory.dirtyLogListeners.stop();
  }

  /** `ram_bytes_remaining`. */
  remainingBytes(): number {
    return this.#memory.dirtyCount * this.#pageSize;
  }

  /**
   * `migration_bitmap_sync`: device trackers and the vCPU log into the migration bitmaps;
   * counts the sync, measures the dirty rate over periods of ≥ 1 s, sends MIGRATION_PASS.
   */
  async #bitmapSync(final: boolean): Promise<void> {
    const { stats, clock, events } = this.#env;
    stats.dirtySyncCount++;
    // Every sync here is a non-periodic one (there is no background sync), so each is a pass.
    stats.iterationCount++;
    this.#timeLastBitmapSync ??= clock.now();
    this.#dirtyPagesPeriod += await this.#memory.syncAllDirtyLogs(final);
    stats.dirtyBytesLastSync = this.remainingBytes();
    const end = clock.now();
    if (end - this.#timeLastBitmapSync > DIRTY_RATE_PERIOD_MS) {
      stats.dirtyPagesRate = Math.round(
        (this.#dirtyPagesPeriod * 1000) / (end - this.#timeLastBitmapSync),
      );
      this.#timeLastBitmapSync = end;
      this.#dirtyPagesPeriod = 0;
    }
    events.pass(stats.iterationCount);
  }

  /** Moves the cursor to the next dirty page, wrapping around the blocks; false if none. */
  #findDirtyPage(): boolean {
    const blocks = this.#memory.blocks;
    for (let visits = 0; visits <= blocks.length; visits++) {
      const bitmap = blocks[this.#blockIndex]!.bitmap;
      if (bitmap.dirtyCount > 0) {
        const page = bitmap.nextDirty(this.#page);
        if (page >= 0) {
          this.#page = page;
          return true;
        }
      }
      this.#blockIndex = (this.#blockIndex + 1) % blocks.length;
      this.#page = 0;
      if (this.#blockIndex === 0) this.#wrapped = true;
    }
    return false;
  }

  /**
   * After the scan passed the end of RAM (`find_dirty_block` with multifd): the pages queued
   * so far go out and every channel syncs, then RAM_SAVE_FLAG_MULTIFD_FLUSH on the main
   * channel, before any page of the next round is queued.
   */
  async #endOfRound(f: QEMUFileWriter): Promise<void> {
    if (!this.#wrapped) return;
    this.#wrapped = false;
    if (this.#multifd !== null) await this.#flushAndSync(f);
  }

  /** `multifd_ram_flush_and_sync` with its main-channel record, sent at once. */
  async #flushAndSync(f: QEMUFileWriter): Promise<void> {
    await this.#multifd!.flushAndSync();
    this.#enc.putMultifdFlush(f);
    f.send();
    if (f.needsDrain) await f.ready();
  }

  /** The run at the cursor, on the main channel or into multifd packets; its page count. */
  async #send(f: QEMUFileWriter, detectZero: boolean, maxRun: number): Promise<number> {
    const queue = this.#multifd;
    if (queue === null) return this.#sendRun(f, detectZero, maxRun);
    const block: RamBlock = this.#memory.blocks[this.#blockIndex]!;
    const start = this.#page;
    const n = block.bitmap.takeRun(start, Math.min(maxRun, block.pagesToSegmentEnd(start)));
    this.#page = start + n;
    const stats = this.#env.stats;
    if (this.#env.options.parameters['zero-page-detection'] !== 'legacy') {
      const zeros = await queue.queueRun(block, start, n, detectZero);
      stats.zeroPages += zeros;
      stats.normalPages += n - zeros;
      return n;
    }
    // "legacy": zero pages are found here and go on the main channel (save_zero_page).
    for (let p = start; p < start + n;) {
      if (block.isZeroPage(p)) {
        this.#enc.putZeroPage(f, block.idstr, p * this.#pageSize);
        stats.zeroPages++;
        p++;
        continue;
      }
      let q = p + 1;
      while (q < start + n && !block.isZeroPage(q)) q++;
      await queue.queueRun(block, p, q - p, false);
      stats.normalPages += q - p;
      p = q;
    }
    return n;
  }

  /**
   * Sends the run of dirty pages at the cursor (`ram_save_target_page` for each) and clears
   * their dirty bits; returns how many pages it sent.
   */
  #sendRun(f: QEMUFileWriter, detectZero: boolean, maxRun: number): number {
    const block: RamBlock = this.#memory.blocks[this.#blockIndex]!;
    const start = this.#page;
    // Clear first, then read: a vCPU write racing with the copy sets the bit again.
    const n = block.bitmap.takeRun(start, Math.min(maxRun, block.pagesToSegmentEnd(start)));
    this.#page = start + n;
    const stats = this.#env.stats;
    if (detectZero && block.isZeroRange(start, n)) {
      for (let p = start; p < start + n; p++)
        this.#enc.putZeroPage(f, block.idstr, p * this.#pageSize);
      stats.zeroPages += n;
      return n;
    }
    let p = start;
    let nextIsZero = false;
    while (p < start + n) {
      if (nextIsZero || (detectZero && block.isZeroPage(p))) {
        this.#enc.putZeroPage(f, block.idstr, p * this.#pageSize);
        stats.zeroPages++;
        nextIsZero = false;
        p++;
        continue;
      }
      let q = p + 1;
      while (q < start + n && !(nextIsZero = detectZero && block.isZeroPage(q))) q++;
      this.#runBlock = block;
      this.#runPage = p;
      this.#enc.putPageRun(f, block.idstr, p * this.#pageSize, q - p, this.#copyRun);
      stats.normalPages += q - p;
      p = q;
    }
    return n;
  }

  /**
   * The longest run: a bitmap word, or under a bandwidth limit an eighth of a 100 ms window's
   * budget (at least one page), so a run never overshoots the budget by much more than a page.
   */
  #maxRun(): number {
    const bandwidth = this.#env.options.parameters['max-bandwidth'];
    if (bandwidth <= 0) return MAX_RUN_PAGES;
    const pages = Math.floor(bandwidth / 10 / 8 / this.#pageSize);
    return Math.max(1, Math.min(MAX_RUN_PAGES, pages));
  }

  /** zero-page-detection "legacy" (and "multifd" without multifd) test pages; "none" does not. */
  #detectZero(): boolean {
    return this.#env.options.parameters['zero-page-detection'] !== 'none';
  }

  /** `ram_transferred_add`. */
  #account(bytes: number): void {
    const stats = this.#env.stats;
    if (this.#env.guestRunning()) stats.precopyBytes += bytes;
    else stats.downtimeBytes += bytes;
  }
}
