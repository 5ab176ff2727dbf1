/**
 * QEMU's "timer" entry (vmstate "timer", version 2): the guest clocks' offsets, which every
 * QEMU source sends as a FULL section. Our guests have no virtual clock, so the entry is
 * load-only: it accepts a QEMU source's section (without it the destination would fail with
 * "Unknown savevm section") and discards the values. We never send one; a QEMU destination
 * treats it as optional (test/fixtures/qemu-7.2-README.md).
 *
 * Layout: i64 cpu_ticks_offset, 8 unused bytes, and since version 2 i64 cpu_clock_offset.
 */
import type { SaveVMHandlers } from './savevm/handlers.ts';
import type { SaveVMRegistry } from './savevm/registry.ts';
import type { QEMUFileReader } from './stream/index.ts';

export const TIMER_IDSTR = 'timer';
export const TIMER_VERSION_ID = 2;

/** Payload bytes of a "timer" section of `versionId` (1 or 2). */
export function timerPayloadSize(versionId: number): number {
  return versionId >= 2 ? 24 : 16;
}

export const timerHandlers: SaveVMHandlers = {
  async loadState(f: QEMUFileReader, versionId: number): Promise<void> {
    if (versionId < 1) throw new Error(`timer version ${versionId} is not supported`);
    await f.skip(timerPayloadSize(versionId), 'timer state');
  },
};

export function registerTimer(registry: SaveVMRegistry): void {
  registry.register(TIMER_IDSTR, timerHandlers, { instanceId: 0, versionId: TIMER_VERSION_ID });
}
