/** The parts of QMP replies the demo reads (shapes of query-migrate and x-query-vfio). */
import type { MigrationInfo } from '../../migration/index.ts';
import type { StateDigest } from '../../vm/index.ts';

export type { MigrationInfo, StateDigest };

export interface VfioStateLogEntry {
  seq: number;
  'run-state': string;
  'migration-status': string | null;
  'device-state': string;
}

export interface VfioDeviceInfo {
  id: string;
  idstr: string;
  flags: string | null;
  'device-state': string;
  blocker: string | null;
  bytes: { precopy: number; 'stop-copy': number };
  'state-log': VfioStateLogEntry[];
}

export interface VfioInfo {
  devices: VfioDeviceInfo[];
  transferred: number;
}

/** The device states of a log from the last one before the migration started, deduplicated. */
export function migrationStates(log: readonly VfioStateLogEntry[]): string[] {
  let start = 0;
  log.forEach((e, i) => {
    if (e['migration-status'] === null) start = i;
  });
  const states: string[] = [];
  for (const e of log.slice(start)) {
    if (states.at(-1) !== e['device-state']) states.push(e['device-state']);
  }
  return states;
}

/** `x-query-multifd`: what each multifd channel carried in the last migration. */
export interface MultifdInfo {
  outgoing: { id: number; packets: number }[];
  incoming: {
    id: number;
    packets: number;
    'ram-packets': number;
    'device-state-packets': number;
    syncs: number;
  }[];
}
