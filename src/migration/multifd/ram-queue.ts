/**
 * Guest RAM pages into multifd RAM packets (QEMU's migration/multifd-nocomp.c and
 * multifd-zero-page.c; qemu-migration.md §4.3): pages are queued into the packet being filled
 * — all from one RAMBlock, at most `MULTIFD_PACKET_SIZE` of them — which goes to the next idle
 * channel when it is full, when a page of another block comes, or at a sync.
 *
 * With zero-page detection on ("multifd", QEMU's default), a zero page travels as its offset
 * in the packet's zero list and costs no data. Normal pages are copied out of guest RAM into
 * the packet when queued, a run of consecutive pages with one native copy into an aligned
 * spot, so nothing is allocated per page. The copy is the page as it was when its dirty bit
 * was cleared or later; a write after the clear sets the bit again, as in QEMU, whose
 * channels read guest memory when they write.
 */
import type { RamBlock } from '../../memory/ram-block.ts';
import type { MultifdSendState, RamPacketBuffer } from './send.ts';

export class MultifdRamQueue {
  readonly #state: MultifdSendState;
  #cur: RamPacketBuffer;

  constructor(state: MultifdSendState) {
    this.#state = state;
    this.#cur = state.takeRamPacket();
  }

  /**
   * `multifd_queue_page` for the `count` pages of `block` from `page` (their dirty bits already
   * cleared); zero pages go in the zero list when `detectZero`. Returns how many were zero.
   */
  async queueRun(
    block: RamBlock,
    page: number,
    count: number,
    detectZero: boolean,
  ): Promise<number> {
    const allZero = detectZero && block.isZeroRange(page, count);
    const end = page + count;
    let zeros = 0;
    let p = page;
    let isZero = allZero || (detectZero && block.isZeroPage(p));
    while (p < end) {
      let pkt = this.#cur.packet;
      if (pkt.pages > 0 && (pkt.block !== block.idstr || pkt.full)) {
        await this.#send();
        pkt = this.#cur.packet;
      }
      pkt.block = block.idstr;
      const size = pkt.pageSize;
      if (isZero) {
        pkt.zero[pkt.zeroCount++] = p * size;
        zeros++;
        p++;
        isZero = allZero || (p < end && detectZero && block.isZeroPage(p));
        continue;
      }
      // The normal pages from p that fit this packet, in one copy.
      const limit = Math.min(end, p + pkt.pageCount - pkt.pages);
      let q = p + 1;
      isZero = false;
      while (q < limit && !(isZero = detectZero && block.isZeroPage(q))) q++;
      if (q === limit && q < end) isZero = detectZero && block.isZeroPage(q);
      block.copyPagesTo(p, q - p, this.#cur.data, pkt.normalCount * size);
      for (let k = p; k < q; k++) pkt.normal[pkt.normalCount++] = k * size;
      p = q;
    }
    return zeros;
  }

  /** Sends the packet being filled, if it holds anything. */
  async flush(): Promise<void> {
    if (this.#cur.packet.pages > 0) await this.#send();
  }

  /**
   * `multifd_ram_flush_and_sync` without the main channel's part: the packet being filled goes
   * out, then every channel writes a SYNC packet. The caller then puts
   * RAM_SAVE_FLAG_MULTIFD_FLUSH on the main channel.
   */
  async flushAndSync(): Promise<void> {
    await this.flush();
    await this.#state.syncMain();
  }

  /** Hands the full packet to a channel; a free one is there once it took it. */
  async #send(): Promise<void> {
    await this.#state.sendRam(this.#cur);
    this.#cur = this.#state.takeRamPacket();
  }
}
