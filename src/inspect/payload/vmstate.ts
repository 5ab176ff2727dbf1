/**
 * The two non-iterable vmstates QEMU sends even for `-machine none`, with their fixed
 * layouts (as captured from QEMU 7.2, test/fixtures/qemu-7.2-README.md):
 * - "globalstate" v1: u32 size (strlen + 1), then a 100-byte buffer with the run-state name;
 * - "timer" v2: i64 cpu_ticks_offset, 8 unused bytes, i64 cpu_clock_offset.
 * Both come as FULL sections only.
 */
import { badInput } from '../../migration/stream/index.ts';
import type { QEMUFileReader } from '../../migration/stream/index.ts';
import type { EntryDecoder } from '../entry.ts';
import type { GlobalStatePayload, SectionKind, TimerPayload } from '../report.ts';

export const GLOBALSTATE_IDSTR = 'globalstate';
export const GLOBALSTATE_VERSION_ID = 1;
/** The run-state name buffer of globalstate. */
export const GLOBALSTATE_RUNSTATE_SIZE = 100;

export const TIMER_IDSTR = 'timer';
export const TIMER_VERSION_ID = 2;
export const TIMER_PAYLOAD_SIZE = 24;

export class GlobalStateDecoder implements EntryDecoder<GlobalStatePayload> {
  readonly format = 'globalstate';

  begin(): GlobalStatePayload {
    return { format: 'globalstate', runState: '' };
  }

  async decodeSection(r: QEMUFileReader, type: SectionKind, s: GlobalStatePayload): Promise<void> {
    requireFull(r, type, GLOBALSTATE_IDSTR);
    const at = r.offset;
    const size = await r.getBe32('globalstate size');
    if (size > GLOBALSTATE_RUNSTATE_SIZE) {
      throw badInput(
        at,
        'globalstate size',
        `${size} exceeds the ${GLOBALSTATE_RUNSTATE_SIZE}-byte run-state buffer`,
      );
    }
    const name = await r.getBytes(
      GLOBALSTATE_RUNSTATE_SIZE,
      'globalstate run state',
      GLOBALSTATE_RUNSTATE_SIZE,
    );
    const nul = name.indexOf(0);
    s.runState = name.toString('latin1', 0, Math.min(size, nul < 0 ? size : nul));
  }
}

export class TimerDecoder implements EntryDecoder<TimerPayload> {
  readonly format = 'timer';

  begin(): TimerPayload {
    return { format: 'timer', cpuTicksOffset: '', cpuClockOffset: '' };
  }

  async decodeSection(r: QEMUFileReader, type: SectionKind, s: TimerPayload): Promise<void> {
    requireFull(r, type, TIMER_IDSTR);
    const b = await r.getBytes(TIMER_PAYLOAD_SIZE, 'timer state', TIMER_PAYLOAD_SIZE);
    s.cpuTicksOffset = b.readBigInt64BE(0).toString();
    s.cpuClockOffset = b.readBigInt64BE(16).toString();
  }
}

function requireFull(r: QEMUFileReader, type: SectionKind, idstr: string): void {
  if (type !== 'FULL') {
    throw badInput(r.offset, `${idstr} payload`, `a ${type} section, '${idstr}' is FULL only`);
  }
}
