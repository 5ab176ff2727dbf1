/**
 * Fault injection over QMP (extensions, not in QEMU): what a test or an operator arms in a
 * running VM process to see a migration fail and recover.
 *
 *   x-inject-fault {type: "channel", side?, channel?, action, bytes + direction | phase | now, ms?}
 *       cut / reset / stall / delay the main migration channel (or multifd channel
 *       `channel`), or kill this process
 *   x-inject-fault {type: "packet", action: "duplicate" | "bad-version", section?, nth?}
 *       the source sends an entry's nth multifd device-state packet twice, or with a bad
 *       version
 *   x-inject-fault {type: "load", section, instance?, section-type?, nth?}
 *       the destination's load of that section fails
 *   x-inject-fault {type: "load-thread", ms}
 *       the destination's load threads (multifd device state) start `ms` late
 *   x-inject-fault {type: "device", id, action, ...}
 *       a simulated device's fault (src/device/sim/faults.ts): fail-arc, error,
 *       corrupt-stream, truncate-stream, stall-reads, clear
 *   x-query-faults     every fault armed, its state and where it fired; each side's phase
 *   x-clear-faults     disarms what has not fired, clears every device's faults
 *
 * `side` defaults to the migration this VM takes part in: incoming while it waits in
 * inmigrate, else outgoing.
 */
import { z } from 'zod';
import { SimDevice } from '../../device/sim/index.ts';
import type { SimFaults } from '../../device/sim/index.ts';
import { RunState } from '../../guest/index.ts';
import {
  CHANNEL_FAULT_ACTIONS,
  FAULT_PHASES,
  LOAD_SECTION_TYPES,
  PACKET_FAULT_ACTIONS,
} from '../../migration/faults/index.ts';
import type {
  FaultRecord,
  FaultTrigger,
  MigrationFaultSpec,
} from '../../migration/faults/index.ts';
import { Errno, parseStateName } from '../../uapi/index.ts';
import type { ErrnoName } from '../../uapi/index.ts';
import type { Vm } from '../../vm/index.ts';
import type { QmpServer } from '../server.ts';

export const DEVICE_FAULT_ACTIONS = [
  'fail-arc',
  'error',
  'corrupt-stream',
  'truncate-stream',
  'stall-reads',
  'clear',
] as const;

const count = z.number().int().nonnegative();

const injectArgs = z.object({
  type: z.enum(['channel', 'load', 'device', 'packet', 'load-thread']),
  // channel
  side: z.enum(['outgoing', 'incoming']).optional(),
  channel: count.optional(),
  action: z.string().optional(),
  bytes: count.optional(),
  direction: z.enum(['in', 'out']).optional(),
  phase: z.enum(FAULT_PHASES as [string, ...string[]]).optional(),
  now: z.boolean().optional(),
  ms: count.optional(),
  // load
  section: z.string().optional(),
  instance: count.optional(),
  'section-type': z.enum(LOAD_SECTION_TYPES).optional(),
  nth: count.optional(),
  // device
  id: z.string().optional(),
  arc: count.optional(),
  reaching: z.string().optional(),
  errno: z.string().optional(),
  'to-error': z.boolean().optional(),
  times: count.optional(),
  offset: count.optional(),
  xor: count.optional(),
  length: count.optional(),
});

type InjectArgs = z.output<typeof injectArgs>;
type ArgName = Exclude<keyof InjectArgs, 'type'>;

/** Which arguments each type takes: anything else is refused rather than ignored. */
const ARGS_OF: Readonly<Record<InjectArgs['type'], readonly ArgName[]>> = {
  channel: ['side', 'channel', 'action', 'bytes', 'direction', 'phase', 'now', 'ms'],
  load: ['section', 'instance', 'section-type', 'nth'],
  packet: ['action', 'section', 'nth'],
  'load-thread': ['ms'],
  device: [
    'id',
    'action',
    'arc',
    'reaching',
    'errno',
    'to-error',
    'times',
    'offset',
    'xor',
    'length',
    'ms',
  ],
};

function refuseOthers(args: InjectArgs): void {
  const allowed = ARGS_OF[args.type];
  for (const [name, value] of Object.entries(args)) {
    if (name === 'type' || value === undefined) continue;
    if (!allowed.includes(name as ArgName)) {
      throw new Error(`'${name}' does not apply to ${args.type} faults`);
    }
  }
}

function oneOf<T extends string>(what: string, value: string | undefined, all: readonly T[]): T {
  if (value === undefined || !all.includes(value as T)) {
    throw new Error(`${what} must be one of ${all.join(', ')}`);
  }
  return value as T;
}

function triggerOf(a: InjectArgs): FaultTrigger {
  const given = [a.bytes !== undefined, a.phase !== undefined, a.now === true].filter(Boolean);
  if (given.length !== 1)
    throw new Error("a channel fault needs exactly one of 'bytes', 'phase', 'now'");
  if (a.bytes !== undefined) {
    if (a.direction === undefined) throw new Error("'bytes' needs a 'direction' (in or out)");
    return { bytes: a.bytes, direction: a.direction };
  }
  if (a.phase !== undefined) return { phase: a.phase as (typeof FAULT_PHASES)[number] };
  return { now: true };
}

function migrationFault(vm: Vm, a: InjectArgs): MigrationFaultSpec {
  if (a.type === 'load') {
    if (a.section === undefined) throw new Error("a load fault needs 'section'");
    return {
      type: 'load',
      section: a.section,
      instance: a.instance,
      sectionType: a['section-type'],
      nth: a.nth,
    };
  }
  if (a.type === 'load-thread') {
    if (a.ms === undefined) throw new Error("a load-thread fault needs 'ms'");
    return { type: 'load-thread', ms: a.ms };
  }
  if (a.type === 'packet') {
    return {
      type: 'packet',
      action: oneOf('action', a.action, PACKET_FAULT_ACTIONS),
      section: a.section,
      nth: a.nth,
    };
  }
  const action = oneOf('action', a.action, CHANNEL_FAULT_ACTIONS);
  const trigger = triggerOf(a);
  const side = a.side ?? (vm.runControl.runState === RunState.INMIGRATE ? 'incoming' : 'outgoing');
  // With a byte count, `direction` is the way counted; stall and delay act on that way too.
  const acts = action === 'stall' || action === 'delay';
  return {
    type: 'channel',
    side,
    channel: a.channel,
    action,
    trigger,
    direction: acts ? a.direction : undefined,
    ms: a.ms,
  };
}

function simFaults(vm: Vm, id: string | undefined): SimFaults {
  if (id === undefined) throw new Error("a device fault needs 'id'");
  const dev = vm.devices.find((d) => d.id === id);
  if (dev === undefined) throw new Error(`Device '${id}' not found`);
  if (!(dev instanceof SimDevice)) {
    throw new Error(`Device '${id}' is not a simulated device: it has no fault injection`);
  }
  return dev.faults;
}

function errnoOf(name: string | undefined): ErrnoName | undefined {
  if (name === undefined) return undefined;
  if (!Object.hasOwn(Errno, name)) {
    throw new Error(`errno '${name}' is not one of ${Object.keys(Errno).join(', ')}`);
  }
  return name as ErrnoName;
}

function injectDeviceFault(vm: Vm, a: InjectArgs): void {
  const faults = simFaults(vm, a.id);
  const action = oneOf('action', a.action, DEVICE_FAULT_ACTIONS);
  const errno = errnoOf(a.errno);
  switch (action) {
    case 'fail-arc':
      if (a.arc === undefined && a.reaching === undefined) {
        throw new Error("fail-arc needs 'arc' (1-based) or 'reaching' (a state name)");
      }
      return faults.failArc({
        arc: a.arc,
        reaching: a.reaching === undefined ? undefined : parseStateName(a.reaching),
        errno,
        toError: a['to-error'],
        times: a.times,
      });
    case 'error':
      return faults.dropToError(errno);
    case 'corrupt-stream':
      if (a.offset === undefined) throw new Error("corrupt-stream needs 'offset'");
      return faults.corruptStream(a.offset, a.xor);
    case 'truncate-stream':
      if (a.length === undefined) throw new Error("truncate-stream needs 'length'");
      return faults.truncateStream(a.length);
    case 'stall-reads':
      return faults.stallReads(a.ms ?? 'forever');
    case 'clear':
      return faults.clear();
  }
}

function recordInfo(f: FaultRecord): Record<string, unknown> {
  return {
    id: f.id,
    type: f.spec.type,
    description: f.description,
    state: f.state,
    ...(f.firedAt === null
      ? {}
      : {
          'fired-at': {
            phase: f.firedAt.phase,
            'bytes-in': f.firedAt.bytesIn,
            'bytes-out': f.firedAt.bytesOut,
          },
        }),
  };
}

export function registerFaultCommands(qmp: QmpServer, vm: Vm): void {
  qmp.register('x-inject-fault', {
    args: injectArgs,
    handler: (args) => {
      refuseOthers(args);
      if (args.type === 'device') {
        injectDeviceFault(vm, args);
        return {};
      }
      return { id: vm.faults.arm(migrationFault(vm, args)).id };
    },
  });
  qmp.register('x-query-faults', {
    handler: () => ({
      phase: { outgoing: vm.faults.phase('outgoing'), incoming: vm.faults.phase('incoming') },
      faults: vm.faults.faults.map(recordInfo),
    }),
  });
  qmp.register('x-clear-faults', {
    handler: () => {
      for (const d of vm.devices) if (d instanceof SimDevice) d.faults.clear();
      return { cleared: vm.faults.clear() };
    },
  });
}
