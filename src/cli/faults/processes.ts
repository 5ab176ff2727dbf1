/**
 * The VM processes of a fault run and what the runner asks them over QMP: spawning (a source,
 * a destination that starts its guest after the load, a paused one for digests), capabilities
 * and parameters, polling the migration to its end, and reading the state that the promises
 * are about. Every wait is bounded; a process that died answers as such instead of failing.
 */
import { migrationIsFinished } from '../../migration/index.ts';
import type { MigrationStatus } from '../../migration/index.ts';
import { listenIncoming } from '../incoming.ts';
import { VmProcess } from '../vm-process.ts';
import type { MigrationInfo, StateDigest, VfioInfo } from '../demo/qmp-types.ts';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A small guest with two devices doing DMA: quick to migrate, long enough to be caught. */
export function matrixGuest(): Record<string, unknown> {
  return {
    memory: '64M',
    vcpus: 1,
    workload: { 'dirty-rate': 16, pattern: 'hot', 'hot-size': '8M', seed: 3 },
    populate: { seed: 5, 'zero-share': 0.3 },
    devices: [
      { id: 'nic0', model: 'sim:nic,state-size=1M,chunk-size=16K,dma-rate=1M' },
      { id: 'gpu0', model: 'sim:gpu,state-size=4M,chunk-size=64K,dirty-rate=2M,dma-rate=1M' },
    ],
  };
}

export class FaultProcesses {
  readonly #dir: string;
  readonly #all = new Set<VmProcess>();
  #n = 0;

  constructor(dir: string) {
    this.#dir = dir;
  }

  /** A running source guest. */
  source(): Promise<VmProcess> {
    return this.#spawn('src', {});
  }

  /**
   * A destination listening on loopback, or waiting (`deferred`: `-incoming defer`, for what
   * must be set before it listens, such as multifd); `paused` keeps the guest stopped after
   * the load (-S).
   */
  destination(paused: boolean, deferred = false): Promise<VmProcess> {
    const incoming = deferred ? 'defer' : 'tcp:127.0.0.1:0';
    return this.#spawn(paused ? 'retry' : 'dst', { incoming, paused });
  }

  /** `quit`, or a kill if it does not go. */
  async stop(vm: VmProcess): Promise<void> {
    this.#all.delete(vm);
    await vm.stop(5000).catch(() => vm.kill());
  }

  async stopAll(): Promise<void> {
    await Promise.allSettled([...this.#all].map((vm) => this.stop(vm)));
  }

  async #spawn(role: string, opts: { incoming?: string; paused?: boolean }): Promise<VmProcess> {
    const vm = await VmProcess.spawn({
      name: `${role}-${++this.#n}`,
      dir: this.#dir,
      config: matrixGuest(),
      ...opts,
    });
    this.#all.add(vm);
    return vm;
  }
}

export async function setCapabilities(vm: VmProcess, caps: Record<string, boolean>): Promise<void> {
  const capabilities = Object.entries(caps).map(([capability, state]) => ({ capability, state }));
  await vm.qmp.execute('migrate-set-capabilities', { capabilities });
}

/**
 * Where a destination takes its migration: its `-incoming` address, or for one spawned
 * deferred, `migrate-incoming` on a free loopback port now.
 */
export async function listenUri(vm: VmProcess): Promise<string> {
  return vm.ready.incoming ?? listenIncoming(vm.qmp);
}

export function queryMigrate(vm: VmProcess): Promise<MigrationInfo> {
  return vm.qmp.execute<MigrationInfo>('query-migrate');
}

export async function runState(vm: VmProcess): Promise<string> {
  return (await vm.qmp.execute<{ status: string }>('query-status')).status;
}

export async function deviceStates(vm: VmProcess): Promise<string[]> {
  const info = await vm.qmp.execute<VfioInfo>('x-query-vfio');
  return info.devices.map((d) => `${d.id} ${d['device-state']}`);
}

export function stateDigest(vm: VmProcess): Promise<StateDigest> {
  return vm.qmp.execute<StateDigest>('x-query-state-digest');
}

/** How one side's migration ended: its status, or 'killed' when the process is gone. */
export interface SideEnd {
  readonly status: string;
  readonly error: string | null;
}

/** Polls until the migration finished (or the process died); `timeout` if neither. */
export async function migrationEnd(vm: VmProcess, timeoutMs: number): Promise<SideEnd> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (vm.exited) return { status: 'killed', error: null };
    let info: MigrationInfo;
    try {
      info = await queryMigrate(vm);
    } catch (err) {
      if (vm.exited || (await exitedSoon(vm))) return { status: 'killed', error: null };
      throw err;
    }
    const status = info.status ?? 'none';
    if (migrationIsFinished(status)) return { status, error: info['error-desc'] ?? null };
    if (Date.now() > end) return { status: `${status} (timeout)`, error: null };
    await sleep(25);
  }
}

/** Polls until `done(status)` holds; false after the timeout or when the process died. */
export async function untilStatus(
  vm: VmProcess,
  done: (status: MigrationStatus, info: MigrationInfo) => boolean,
  timeoutMs: number,
): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end && !vm.exited) {
    let info: MigrationInfo;
    try {
      info = await queryMigrate(vm);
    } catch {
      return false;
    }
    if (done(info.status ?? 'none', info)) return true;
    await sleep(10);
  }
  return false;
}

async function exitedSoon(vm: VmProcess): Promise<boolean> {
  for (let i = 0; i < 20 && !vm.exited; i++) await sleep(25);
  return vm.exited;
}
