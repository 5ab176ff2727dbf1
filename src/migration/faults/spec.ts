/**
 * What the fault layer can do to a migration, and when (not in QEMU: a test and operations
 * aid). A fault is armed on one VM, for one side of its migration:
 *
 *   channel  cut (close), reset (RST), stall or delay the main channel or a multifd channel,
 *            or kill the process, at an exact byte count going one way, when a phase is
 *            reached, or now
 *   load     the destination's load of a section fails (the nth START/PART/END/FULL of an entry)
 *   packet   the source sends an entry's nth multifd device-state packet twice, or with a
 *            version the destination does not know (VFIODeviceStatePacket, §4.2)
 *   load-thread  the destination's load threads start late, so multifd device-state packets
 *            queue meanwhile (what x-migration-max-queued-buffers-size bounds, §4.5)
 *
 * Device faults (a failing arc, ERROR, a damaged or short stream) belong to the device
 * backends and are armed there; see src/qmp/commands/fault-commands.ts.
 */
import { MULTIFD_CHANNELS_MAX } from '../multifd/wire.ts';
import type { ChannelDirection } from '../transport/fault-channel.ts';

/**
 * Where a migration is, as a fault sees it. The source knows all of them from its status; the
 * destination sees setup (until the first PART), pre-copy (PART sections), stop-and-copy (END
 * or FULL sections) and after-eof (the EOF read, SHUT not yet sent) from what it loads, and
 * cannot see the source's switchover wait.
 */
export const FaultPhase = {
  SETUP: 'setup',
  PRE_COPY: 'pre-copy',
  SWITCHOVER_WAIT: 'switchover-wait',
  STOP_AND_COPY: 'stop-and-copy',
  AFTER_EOF: 'after-eof',
} as const;
export type FaultPhase = (typeof FaultPhase)[keyof typeof FaultPhase];
export const FAULT_PHASES: readonly FaultPhase[] = Object.values(FaultPhase);

/** Which migration of the VM: the one it sends, or the one it receives. */
export type FaultSide = 'outgoing' | 'incoming';

export const CHANNEL_FAULT_ACTIONS = ['cut', 'reset', 'stall', 'delay', 'kill'] as const;
export type ChannelFaultAction = (typeof CHANNEL_FAULT_ACTIONS)[number];

/** When a channel fault fires: exactly one of these. */
export type FaultTrigger =
  | { readonly bytes: number; readonly direction: ChannelDirection }
  | { readonly phase: FaultPhase }
  | { readonly now: true };

export interface ChannelFaultSpec {
  readonly type: 'channel';
  readonly side: FaultSide;
  /** A multifd channel's id; the main channel when absent. */
  readonly channel?: number;
  readonly action: ChannelFaultAction;
  readonly trigger: FaultTrigger;
  /** For stall and delay: one direction (default both). */
  readonly direction?: ChannelDirection;
  /** stall: how long (default until the channel ends); delay: per chunk (required). */
  readonly ms?: number;
}

export const LOAD_SECTION_TYPES = ['start', 'part', 'end', 'full'] as const;
export type LoadSectionType = (typeof LOAD_SECTION_TYPES)[number];

export interface LoadFaultSpec {
  readonly type: 'load';
  /** The entry's idstr, e.g. "ram" or "0000:00:05.0/vfio". */
  readonly section: string;
  readonly instance?: number;
  /** Only sections of this type count (default any). */
  readonly sectionType?: LoadSectionType;
  /** Fail the nth matching section (1-based, default 1). */
  readonly nth?: number;
}

export const PACKET_FAULT_ACTIONS = ['duplicate', 'bad-version'] as const;
export type PacketFaultAction = (typeof PACKET_FAULT_ACTIONS)[number];

export interface PacketFaultSpec {
  readonly type: 'packet';
  readonly action: PacketFaultAction;
  /** Only packets of this entry count (e.g. "0000:00:05.0/vfio"); default any. */
  readonly section?: string;
  /** The nth matching packet (1-based, default 1). */
  readonly nth?: number;
}

export interface LoadThreadFaultSpec {
  readonly type: 'load-thread';
  /**
   * How long every load thread of the next incoming migration is held back, from the start
   * of the first one (SWITCHOVER_START); a failing load releases them at once.
   */
  readonly ms: number;
}

export type MigrationFaultSpec =
  ChannelFaultSpec | LoadFaultSpec | PacketFaultSpec | LoadThreadFaultSpec;

function checkCount(what: string, v: number | undefined, min: number): void {
  if (v !== undefined && !(Number.isSafeInteger(v) && v >= min)) {
    throw new Error(`${what} must be an integer >= ${min}, not ${v}`);
  }
}

/** Throws with what is wrong in a fault that cannot work as given. */
export function checkFaultSpec(f: MigrationFaultSpec): void {
  if (f.type === 'load') {
    if (f.section.length === 0) throw new Error('a load fault needs a section idstr');
    checkCount('instance', f.instance, 0);
    checkCount('nth', f.nth, 1);
    return;
  }
  if (f.type === 'load-thread') {
    checkCount('ms', f.ms, 1);
    return;
  }
  if (f.type === 'packet') {
    if (!PACKET_FAULT_ACTIONS.includes(f.action)) {
      throw new Error(`a packet fault is one of ${PACKET_FAULT_ACTIONS.join(', ')}`);
    }
    checkCount('nth', f.nth, 1);
    return;
  }
  checkCount('channel', f.channel, 0);
  if (f.channel !== undefined && f.channel >= MULTIFD_CHANNELS_MAX) {
    throw new Error(
      `channel must be a multifd channel id (0 to ${MULTIFD_CHANNELS_MAX - 1}), not ${f.channel}`,
    );
  }
  const t = f.trigger;
  if ('bytes' in t) checkCount('bytes', t.bytes, 0);
  if ('phase' in t && !FAULT_PHASES.includes(t.phase)) {
    throw new Error(`unknown phase '${String(t.phase)}' (one of ${FAULT_PHASES.join(', ')})`);
  }
  if ('phase' in t && t.phase === FaultPhase.SWITCHOVER_WAIT && f.side === 'incoming') {
    throw new Error(
      "the destination cannot see the source's switchover wait: arm it on the source, " +
        'or trigger it now while the source waits',
    );
  }
  checkCount('ms', f.ms, 0);
  if (f.action === 'delay' && (f.ms === undefined || f.ms === 0)) {
    throw new Error('a delay needs ms > 0');
  }
  if (f.direction !== undefined && f.action !== 'stall' && f.action !== 'delay') {
    throw new Error(`direction applies to stall and delay, not to ${f.action}`);
  }
}

/** One line for tables and query results, e.g. "incoming: cut at byte 4096 in". */
export function describeFault(f: MigrationFaultSpec): string {
  if (f.type === 'load') {
    const which = f.sectionType === undefined ? 'section' : `${f.sectionType.toUpperCase()}`;
    return `load of ${which} '${f.section}'${f.instance ? ` instance ${f.instance}` : ''} #${f.nth ?? 1} fails`;
  }
  if (f.type === 'load-thread') return `incoming: load threads held back ${f.ms} ms`;
  if (f.type === 'packet') {
    const how = f.action === 'duplicate' ? 'sent twice' : 'sent with a bad version';
    return `outgoing: device state packet #${f.nth ?? 1}${f.section === undefined ? '' : ` of '${f.section}'`} ${how}`;
  }
  const t = f.trigger;
  const when =
    'bytes' in t ? `at byte ${t.bytes} ${t.direction}` : 'phase' in t ? `at ${t.phase}` : 'now';
  const how =
    f.action === 'stall' || f.action === 'delay'
      ? `${f.action} ${f.direction ?? 'both ways'}${f.ms !== undefined ? ` ${f.ms} ms` : ''}`
      : f.action;
  const where = f.channel === undefined ? '' : ` (multifd channel ${f.channel})`;
  return `${f.side}${where}: ${how} ${when}`;
}
