/**
 * Shared helpers for the VFIO layer tests: a small VM (registry, run control, guest memory,
 * notifiers, blockers, migration status) with sim devices attached, contexts for the hooks, and
 * a writer/reader pair to capture one hook's payload and feed it to the other side.
 */
import assert from 'node:assert/strict';
import type { SimDevice } from '../../src/device/sim/index.ts';
import type { VfioMigrationDevice } from '../../src/device/device.ts';
import { RunState, VmRunControl } from '../../src/guest/index.ts';
import { GuestMemory } from '../../src/memory/index.ts';
import type { GuestIommu, IommuContainer } from '../../src/memory/iommu/index.ts';
import { MigrationBlockers } from '../../src/migration/blockers.ts';
import { MigrationNotifiers } from '../../src/migration/notifiers.ts';
import type { LoadContext, SaveContext } from '../../src/migration/savevm/handlers.ts';
import { SaveVMRegistry } from '../../src/migration/savevm/registry.ts';
import { MemorySink, QEMUFileReader, QEMUFileWriter } from '../../src/migration/stream/index.ts';
import type { MigrationFlags } from '../../src/uapi/index.ts';
import { attachVfioDevices } from '../../src/vfio/index.ts';
import { makeDevice } from '../device/sim/helpers.ts';
import type { ModelName } from '../device/sim/helpers.ts';
import type {
  VFIOMigration,
  VfioDeviceConfig,
  VfioDeviceSet,
  VfioMigrationEvent,
} from '../../src/vfio/index.ts';

export { MODELS } from '../device/sim/helpers.ts';
export type { ModelName } from '../device/sim/helpers.ts';

/** A sim device of `model` with `flags`; `extra` (",key=value...") overrides the defaults. */
export function simDevice(
  model: ModelName,
  flags: MigrationFlags,
  id: string,
  extra = '',
): SimDevice {
  return makeDevice(model, flags, extra, id);
}

/** A mutable migration status standing in for the core's. */
export interface StatusBox {
  value: string;
}

export interface TestVm {
  readonly registry: SaveVMRegistry;
  readonly runControl: VmRunControl;
  readonly memory: GuestMemory;
  readonly notifiers: MigrationNotifiers;
  readonly blockers: MigrationBlockers;
  readonly status: StatusBox;
  readonly events: VfioMigrationEvent[];
  readonly warnings: string[];
  /** Every state recorded, VM-wide, in order: "device:STATE". */
  readonly order: { device: string; state: number }[];
  readonly set: VfioDeviceSet;
}

export interface TestVmOptions {
  devices: VfioDeviceConfig[];
  /** Initial run state: running (source) or inmigrate (destination). */
  initial?: RunState;
  memory?: GuestMemory;
  container?: IommuContainer;
  viommu?: GuestIommu;
}

/** A VM with `devices` attached; source VMs are started (prelaunch -> running). */
export async function testVm(opts: TestVmOptions): Promise<TestVm> {
  const initial = opts.initial ?? RunState.RUNNING;
  const runControl = new VmRunControl({
    initial: initial === RunState.RUNNING ? RunState.PRELAUNCH : initial,
  });
  if (initial === RunState.RUNNING) assert.deepEqual(await runControl.vmStart(), []);
  const status: StatusBox = { value: 'none' };
  const events: VfioMigrationEvent[] = [];
  const warnings: string[] = [];
  const order: { device: string; state: number }[] = [];
  const parts = {
    registry: new SaveVMRegistry(),
    runControl,
    memory: opts.memory ?? GuestMemory.flat([{ idstr: 'ram', size: 64 << 10 }]),
    notifiers: new MigrationNotifiers(),
    blockers: new MigrationBlockers(),
  };
  const set = await attachVfioDevices({
    ...parts,
    ...(opts.container ? { container: opts.container } : {}),
    ...(opts.viommu ? { viommu: opts.viommu } : {}),
    devices: opts.devices,
    migrationStatus: () => status.value,
    listeners: {
      event: (e) => events.push(e),
      warning: (w) => warnings.push(w),
      stateChange: (device, e) => order.push({ device, state: e.deviceState }),
    },
  });
  return { ...parts, status, events, warnings, order, set };
}

/** The migration of device `id` (which must have one). */
export function mig(vm: TestVm, id: string): VFIOMigration {
  const m = vm.set.find(id)?.migration;
  assert.ok(m, `device ${id} has a migration`);
  return m;
}

/** What the core answers for the multifd questions, given the capabilities on. */
function multifdAnswers(caps: readonly string[]) {
  return {
    multifdDeviceState: () => caps.includes('multifd'),
    sendSwitchoverStart: () => true,
  };
}

export function saveCtx(caps: readonly string[] = [], running = () => true): SaveContext {
  return {
    capability: (name) => caps.includes(name),
    guestRunning: running,
    ...multifdAnswers(caps),
  };
}

export interface TestLoadContext extends LoadContext {
  approvals: number;
  /** The load threads started, by name. */
  threads: Map<string, Promise<void>>;
  /** Aborts every load thread (the load failed elsewhere). */
  abortThreads: AbortController;
}

/** A LoadContext counting approvals; `pending` approvals are allowed before one is spurious. */
export function loadCtx(caps: readonly string[] = [], pending = 1): TestLoadContext {
  const ctx: TestLoadContext = {
    approvals: 0,
    threads: new Map(),
    abortThreads: new AbortController(),
    capability: (name) => caps.includes(name),
    ...multifdAnswers(caps),
    approveSwitchover: () => {
      if (ctx.approvals >= pending) return Promise.reject(new Error('no switchover ack pending'));
      ctx.approvals++;
      return Promise.resolve();
    },
    startLoadThread: (name, job) => {
      const running = job(ctx.abortThreads.signal);
      running.catch(() => undefined);
      ctx.threads.set(name, running);
    },
    multifdRecvSync: () => Promise.resolve(),
  };
  return ctx;
}

/** The bytes one save hook writes (a section payload). */
export async function capture(write: (f: QEMUFileWriter) => Promise<unknown>): Promise<Buffer> {
  const sink = new MemorySink();
  const f = new QEMUFileWriter(sink, { chunkSize: 64 << 10 });
  await write(f);
  await f.flush();
  return sink.bytes();
}

/** A reader over `bytes`, delivered in chunks of `chunk` bytes (default: one piece). */
export function readerOf(bytes: Uint8Array, chunk = bytes.length || 1): QEMUFileReader {
  const r = new QEMUFileReader();
  for (let at = 0; at < bytes.length; at += chunk) {
    r.push(Buffer.from(bytes.subarray(at, Math.min(at + chunk, bytes.length))));
  }
  r.end();
  return r;
}

/** Runs the load hook over one payload and checks it consumed exactly the payload. */
export async function load(m: VFIOMigration, payload: Uint8Array, chunk?: number): Promise<void> {
  const r = readerOf(payload, chunk);
  await m.loadState(r);
  assert.equal(r.offset, payload.length, 'the load hook consumed the whole payload');
}

/** Wraps a device, replacing some of its calls (a misbehaving backend). */
export function overriding(
  dev: VfioMigrationDevice,
  overrides: Partial<VfioMigrationDevice>,
): VfioMigrationDevice {
  return new Proxy(dev, {
    get(target, prop, receiver) {
      if (Object.hasOwn(overrides, prop)) return overrides[prop as keyof VfioMigrationDevice];
      const v: unknown = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** The VFIO_MIG_FLAG_* delimiters as big-endian hex, written out (golden bytes, §1.3). */
export const FLAG_HEX = {
  EOS: 'ffffffffef100001',
  CONFIG: 'ffffffffef100002',
  SETUP: 'ffffffffef100003',
  DATA: 'ffffffffef100004',
  INIT_DATA_SENT: 'ffffffffef100005',
  LOAD_READY: 'ffffffffef100006',
} as const;

export interface MigrateOptions {
  /** Capabilities on both sides. */
  caps?: readonly string[];
  /** Device activity between iterations (source side). */
  activity?: () => void;
  /** Stop iterating once the pending bytes are below this (default 256 KiB). */
  threshold?: number;
  maxIterations?: number;
  /** Bytes per chunk when feeding payloads to the destination. */
  chunk?: number;
}

export interface MigrateResult {
  /** Source device digests taken right after the VM stopped, by device id. */
  digests: Map<string, string>;
  iterations: number;
  /** Payload of each section, in stream order, with its kind. */
  sections: { kind: 'START' | 'PART' | 'END' | 'FULL'; idstr: string; payload: Buffer }[];
  approvals: number;
}

/**
 * Drives the VFIO entries of `src` and `dst` through a whole migration in QEMU's order, each
 * payload going straight to the destination's entry of the same idstr: setup, iterations with
 * activity in between until the estimate is below the threshold, VM stop for finish-migrate,
 * complete, state, cleanup; then the destination VM start and load cleanup.
 */
export async function migrate(
  src: TestVm,
  dst: TestVm,
  opts: MigrateOptions = {},
): Promise<MigrateResult> {
  const caps = opts.caps ?? [];
  const entries = src.registry.entries();
  const peer = (idstr: string, instanceId: number) => {
    const e = dst.registry.find(idstr, instanceId);
    assert.ok(e, `destination has ${idstr} instance ${instanceId}`);
    return e.handlers;
  };
  const sections: MigrateResult['sections'] = [];
  const send = async (
    kind: MigrateResult['sections'][number]['kind'],
    e: (typeof entries)[number],
    write: (f: QEMUFileWriter) => Promise<unknown>,
  ) => {
    const payload = await capture(write);
    sections.push({ kind, idstr: e.idstr, payload });
    const r = readerOf(payload, opts.chunk);
    await peer(e.idstr, e.instanceId).loadState!(r, e.versionId);
    assert.equal(r.offset, payload.length, `${e.idstr}: the whole ${kind} payload was loaded`);
  };

  const lctx = loadCtx(caps, entries.length);
  dst.status.value = 'active';
  for (const e of entries) await peer(e.idstr, e.instanceId).loadSetup!(lctx);

  const sctx = saveCtx(caps, () => src.runControl.isRunning());
  for (const e of entries) e.handlers.savePrepare!(sctx);
  src.status.value = 'setup';
  for (const e of entries) await send('START', e, (f) => e.handlers.saveSetup!(f, sctx));
  src.status.value = 'active';

  let iterations = 0;
  for (; iterations < (opts.maxIterations ?? 200); iterations++) {
    opts.activity?.();
    // qemu-migration.md §2.3: the estimate, then the exact figures when it looks small.
    const threshold = opts.threshold ?? 256 << 10;
    let pending = { mustPrecopy: 0, canPostcopy: 0 };
    for (const e of entries) e.handlers.statePendingEstimate!(pending);
    if (pending.mustPrecopy < threshold) {
      pending = { mustPrecopy: 0, canPostcopy: 0 };
      for (const e of entries) await e.handlers.statePendingExact!(pending);
      if (pending.mustPrecopy < threshold) break;
    }
    for (const e of entries) {
      if (!e.handlers.isActiveIterate!()) continue;
      await send('PART', e, (f) => e.handlers.saveLiveIterate!(f, { exceeded: () => false }));
    }
  }

  assert.deepEqual(await src.runControl.vmStop(RunState.FINISH_MIGRATE), [], 'VM stop');
  const digests = new Map<string, string>();
  for (const d of src.set.devices) digests.set(d.name, await d.device.stateDigest!());
  src.status.value = 'device';
  for (const e of entries) await send('END', e, (f) => e.handlers.saveComplete!(f));
  for (const e of entries) await send('FULL', e, (f) => e.handlers.saveState!(f));
  src.status.value = 'completed';
  src.runControl.runstateSet(RunState.POSTMIGRATE);
  for (const e of entries) await e.handlers.saveCleanup!();

  assert.deepEqual(await dst.runControl.vmStart(), [], 'destination VM start');
  dst.status.value = 'completed';
  for (const e of entries) await peer(e.idstr, e.instanceId).loadCleanup!();
  return { digests, iterations, sections, approvals: lctx.approvals };
}
