/** The demo's result: one JSON object (`--json`) and its human rendering. */
import pc from 'picocolors';
import { bytes, count, ms, rate } from './format.ts';
import { migrationStates } from './qmp-types.ts';
import type { MigrationInfo, MultifdInfo, StateDigest, VfioInfo } from './qmp-types.ts';

export interface DemoDeviceResult {
  id: string;
  idstr: string;
  flags: string | null;
  /** Device data bytes the source sent. */
  bytes: number;
  precopyBytes: number;
  stopCopyBytes: number;
  /** Source device states from just before the migration to the end, in order. */
  states: string[];
  /** Destination device states, from its start to running again. */
  destinationStates: string[];
  sourceDigest: string;
  destinationDigest: string;
}

export interface DemoResult {
  /** QEMU's status string of the source migration. */
  status: string;
  /** True only when every digest of the destination equals the source's at switchover. */
  verified: boolean;
  error: string | null;
  totalTimeMs: number;
  setupTimeMs: number;
  downtimeMs: number;
  downtimeLimitMs: number;
  expectedDowntimeMs: number | null;
  transferredBytes: number;
  ramBytes: number;
  deviceBytes: number;
  /** RAM bytes sent while the guest ran / during the downtime (QEMU's precopy-bytes). */
  precopyBytes: number;
  downtimeBytes: number;
  iterations: number;
  dirtySyncCount: number;
  throughputMbps: number;
  ram: {
    totalBytes: number;
    normalPages: number;
    zeroPages: number;
    sourceDigest: string;
    destinationDigest: string;
  };
  devices: DemoDeviceResult[];
  /** Run state of the destination after `cont`. */
  destinationRunState: string | null;
  /** With multifd: what each channel carried (x-query-multifd of both sides); else null. */
  multifd: DemoMultifdResult | null;
}

export interface DemoMultifdResult {
  /** Bytes sent over the multifd channels (query-migrate's multifd-bytes). */
  bytes: number;
  channels: {
    id: number;
    /** Packets the source wrote, its handshake included. */
    sent: number;
    /** Packets the destination took: RAM, device state, and how many SYNCs. */
    received: number;
    ramPackets: number;
    deviceStatePackets: number;
    syncs: number;
  }[];
}

export interface DemoFacts {
  info: MigrationInfo;
  downtimeLimitMs: number;
  sourceVfio: VfioInfo;
  destinationVfio: VfioInfo | null;
  sourceDigest: StateDigest | null;
  destinationDigest: StateDigest | null;
  destinationRunState: string | null;
  sourceMultifd?: MultifdInfo | null;
  destinationMultifd?: MultifdInfo | null;
}

function multifdResult(f: DemoFacts): DemoMultifdResult | null {
  const src = f.sourceMultifd ?? null;
  const dst = f.destinationMultifd ?? null;
  if (src === null && dst === null) return null;
  const ids = [...new Set([...(src?.outgoing ?? []), ...(dst?.incoming ?? [])].map((c) => c.id))];
  return {
    bytes: f.info.ram?.['multifd-bytes'] ?? 0,
    channels: ids
      .sort((a, b) => a - b)
      .map((id) => {
        const out = src?.outgoing.find((c) => c.id === id);
        const inc = dst?.incoming.find((c) => c.id === id);
        return {
          id,
          sent: out?.packets ?? 0,
          received: inc?.packets ?? 0,
          ramPackets: inc?.['ram-packets'] ?? 0,
          deviceStatePackets: inc?.['device-state-packets'] ?? 0,
          syncs: inc?.syncs ?? 0,
        };
      }),
  };
}

export function buildResult(f: DemoFacts): DemoResult {
  const ram = f.info.ram;
  const vfioBytes = f.info.vfio?.transferred ?? 0;
  const digestOf = (d: StateDigest | null, id: string) =>
    d?.devices.find((x) => x.id === id)?.sha256 ?? '';
  const devices = f.sourceVfio.devices.map((d): DemoDeviceResult => {
    const dst = f.destinationVfio?.devices.find((x) => x.id === d.id);
    return {
      id: d.id,
      idstr: d.idstr,
      flags: d.flags,
      bytes: d.bytes.precopy + d.bytes['stop-copy'],
      precopyBytes: d.bytes.precopy,
      stopCopyBytes: d.bytes['stop-copy'],
      states: migrationStates(d['state-log']),
      destinationStates: dst
        ? dst['state-log'].map((e) => e['device-state']).filter((s, i, a) => a[i - 1] !== s)
        : [],
      sourceDigest: digestOf(f.sourceDigest, d.id),
      destinationDigest: digestOf(f.destinationDigest, d.id),
    };
  });
  const verified =
    f.info.status === 'completed' &&
    f.sourceDigest !== null &&
    f.destinationDigest !== null &&
    f.sourceDigest.sha256 === f.destinationDigest.sha256 &&
    devices.every((d) => d.sourceDigest !== '' && d.sourceDigest === d.destinationDigest);
  return {
    status: f.info.status ?? 'none',
    verified,
    error: f.info['error-desc'] ?? null,
    totalTimeMs: f.info['total-time'] ?? 0,
    setupTimeMs: f.info['setup-time'] ?? 0,
    downtimeMs: f.info.downtime ?? 0,
    downtimeLimitMs: f.downtimeLimitMs,
    expectedDowntimeMs: f.info['expected-downtime'] ?? null,
    transferredBytes: ram?.transferred ?? 0,
    ramBytes: (ram?.transferred ?? 0) - vfioBytes,
    deviceBytes: vfioBytes,
    precopyBytes: ram?.['precopy-bytes'] ?? 0,
    downtimeBytes: ram?.['downtime-bytes'] ?? 0,
    iterations: ram?.['iteration-count'] ?? 0,
    dirtySyncCount: ram?.['dirty-sync-count'] ?? 0,
    throughputMbps: ram?.mbps ?? 0,
    ram: {
      totalBytes: ram?.total ?? 0,
      normalPages: ram?.normal ?? 0,
      zeroPages: ram?.duplicate ?? 0,
      sourceDigest: f.sourceDigest?.ram.sha256 ?? '',
      destinationDigest: f.destinationDigest?.ram.sha256 ?? '',
    },
    devices,
    destinationRunState: f.destinationRunState,
    multifd: multifdResult(f),
  };
}

const short = (h: string) => (h ? h.slice(0, 16) : '(none)');
const tick = (ok: boolean) => (ok ? pc.green('equal') : pc.red('DIFFERENT'));

export function renderResult(r: DemoResult): string {
  const out: string[] = [];
  const head =
    r.status === 'completed'
      ? pc.bold(`Migration completed in ${ms(r.totalTimeMs)}`)
      : pc.bold(pc.red(`Migration ${r.status}${r.error ? `: ${r.error}` : ''}`));
  out.push('', head);
  if (r.status === 'completed') {
    out.push(
      `  downtime      ${ms(r.downtimeMs)} (limit ${ms(r.downtimeLimitMs)}), setup ${ms(r.setupTimeMs)}`,
      `  transferred   ${bytes(r.transferredBytes)}, ${rate(r.throughputMbps)}, ` +
        `${r.iterations} iterations, ${r.dirtySyncCount} dirty-bitmap syncs`,
      `  guest RAM     ${bytes(r.ram.totalBytes)}: ${count(r.ram.normalPages)} pages and ` +
        `${count(r.ram.zeroPages)} zero pages sent; ${bytes(r.precopyBytes)} while running, ` +
        `${bytes(r.downtimeBytes)} during downtime`,
      `  device data   ${bytes(r.deviceBytes)}`,
    );
  }
  out.push('', pc.bold('Devices'));
  for (const d of r.devices) {
    out.push(
      `  ${d.id.padEnd(6)} ${d.idstr}  ${d.flags ?? 'not migratable'}  ${bytes(d.bytes)}` +
        ` (pre-copy ${bytes(d.precopyBytes)}, stop-copy ${bytes(d.stopCopyBytes)})`,
      `         source       ${d.states.join(' -> ')}`,
      `         destination  ${d.destinationStates.join(' -> ')}`,
    );
  }
  if (r.multifd !== null) {
    out.push(
      '',
      pc.bold(`Multifd channels (${bytes(r.multifd.bytes)} over them, beside the main channel)`),
    );
    for (const c of r.multifd.channels) {
      out.push(
        `  channel ${String(c.id).padEnd(3)} sent ${count(c.sent)} packets, received ` +
          `${count(c.received)}: ${count(c.ramPackets)} RAM, ${count(c.deviceStatePackets)} ` +
          `device state, ${count(c.syncs)} syncs`,
      );
    }
  }
  out.push('', pc.bold('Verification (source at switchover vs destination after load)'));
  out.push(
    `  guest RAM  ${short(r.ram.sourceDigest)}  ${short(r.ram.destinationDigest)}  ${tick(r.ram.sourceDigest !== '' && r.ram.sourceDigest === r.ram.destinationDigest)}`,
  );
  for (const d of r.devices) {
    out.push(
      `  ${d.id.padEnd(9)}  ${short(d.sourceDigest)}  ${short(d.destinationDigest)}  ${tick(d.sourceDigest !== '' && d.sourceDigest === d.destinationDigest)}`,
    );
  }
  out.push(
    r.verified
      ? pc.green(
          `  verified: nothing was lost; the destination resumed (${r.destinationRunState ?? '?'})`,
        )
      : pc.red('  NOT verified'),
    '',
  );
  return out.join('\n');
}
