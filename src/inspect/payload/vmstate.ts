/**
 * The two non-iterable entries every QEMU source sends, even for `-machine none`, decoded with
 * the core's layouts (src/migration/global-state.ts, src/migration/timer.ts):
 * - "globalstate" v1: the source's run state, checked as QEMU's post_load checks it;
 * - "timer" v1/v2: i64 cpu_ticks_offset, 8 unused bytes, and since v2 i64 cpu_clock_offset.
 * Both come as FULL sections only.
 */
import {
  GLOBAL_STATE_IDSTR,
  GLOBAL_STATE_VERSION_ID,
  readGlobalState,
} from '../../migration/global-state.ts';
import { TIMER_IDSTR, TIMER_VERSION_ID, timerPayloadSize } from '../../migration/timer.ts';
import { badInput } from '../../migration/stream/index.ts';
import type { QEMUFileReader } from '../../migration/stream/index.ts';
import type { EntryDecoder } from '../entry.ts';
import type { GlobalStatePayload, SectionKind, TimerPayload } from '../report.ts';

export { GLOBAL_STATE_IDSTR, GLOBAL_STATE_VERSION_ID, TIMER_IDSTR, TIMER_VERSION_ID };

export class GlobalStateDecoder implements EntryDecoder<GlobalStatePayload> {
  readonly format = 'globalstate';

  begin(): GlobalStatePayload {
    return { format: 'globalstate', runState: '' };
  }

  async decodeSection(r: QEMUFileReader, type: SectionKind, s: GlobalStatePayload): Promise<void> {
    requireFull(r, type, GLOBAL_STATE_IDSTR);
    s.runState = await readGlobalState(r);
  }
}

export class TimerDecoder implements EntryDecoder<TimerPayload> {
  readonly format = 'timer';
  private readonly size: number;

  constructor(versionId: number) {
    this.size = timerPayloadSize(versionId);
  }

  begin(): TimerPayload {
    return { format: 'timer', cpuTicksOffset: '', cpuClockOffset: null };
  }

  async decodeSection(r: QEMUFileReader, type: SectionKind, s: TimerPayload): Promise<void> {
    requireFull(r, type, TIMER_IDSTR);
    const b = await r.getBytes(this.size, 'timer state', this.size);
    s.cpuTicksOffset = b.readBigInt64BE(0).toString();
    if (b.length >= 24) s.cpuClockOffset = b.readBigInt64BE(16).toString();
  }
}

function requireFull(r: QEMUFileReader, type: SectionKind, idstr: string): void {
  if (type !== 'FULL') {
    throw badInput(r.offset, `${idstr} payload`, `a ${type} section, '${idstr}' is FULL only`);
  }
}
