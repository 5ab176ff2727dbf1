/**
 * End-to-end harness: source and destination as separate `vfio-migrate run` processes on
 * loopback, driven over QMP. Every wait is bounded; every process is stopped at test end.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { VmProcess } from '../../src/cli/vm-process.ts';
import type { SpawnVmOptions } from '../../src/cli/vm-process.ts';
import type { MigrationInfo, StateDigest, VfioInfo } from '../../src/cli/demo/qmp-types.ts';
import {
  queryMigrate as query,
  runState as runStatus,
  setCapabilities as setCaps,
  sleep,
  stateDigest as digest,
} from '../../src/cli/faults/index.ts';

export type { MigrationInfo, StateDigest, VfioInfo };
export { digest, query, runStatus, setCaps, sleep };

/** The capabilities of a plain migration between two processes: events and the return path. */
export const CAPS = { events: true, 'return-path': true };

/** A small guest: 2 vCPUs dirtying a hot set, a nic and a gpu doing DMA. */
export function smallGuest(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    memory: '128M',
    vcpus: 2,
    workload: { 'dirty-rate': 32, pattern: 'hot', 'hot-size': '32M', seed: 3 },
    populate: { seed: 5, 'zero-share': 0.3 },
    devices: [
      { id: 'nic0', model: 'sim:nic,state-size=2M,chunk-size=16K,dma-rate=2M' },
      { id: 'gpu0', model: 'sim:gpu,state-size=16M,dirty-rate=8M,dma-rate=2M' },
    ],
    ...over,
  };
}

export class E2e {
  readonly dir = mkdtempSync(join(tmpdir(), 'vfio-e2e-'));
  readonly #procs: VmProcess[] = [];

  constructor(t: TestContext) {
    t.after(async () => {
      await Promise.allSettled(this.#procs.map((p) => p.stop()));
      rmSync(this.dir, { recursive: true, force: true });
    });
  }

  async spawn(opts: Omit<SpawnVmOptions, 'dir'>): Promise<VmProcess> {
    const p = await VmProcess.spawn({ ...opts, dir: this.dir });
    this.#procs.push(p);
    return p;
  }

  /** A destination listening on a free loopback port (paused after load, so it can be digested). */
  destination(config: unknown, name = 'dst'): Promise<VmProcess> {
    return this.spawn({ name, config, incoming: 'tcp:127.0.0.1:0', paused: true });
  }

  source(config: unknown, name = 'src'): Promise<VmProcess> {
    return this.spawn({ name, config });
  }

  /** A destination and a source of `config`, both with `caps`. */
  async pair(
    config: unknown,
    caps: Record<string, boolean> = CAPS,
  ): Promise<{ src: VmProcess; dst: VmProcess }> {
    const [dst, src] = await Promise.all([this.destination(config), this.source(config)]);
    await setCaps(src, caps);
    await setCaps(dst, caps);
    return { src, dst };
  }
}

/** Polls query-migrate until `done` holds. */
export async function waitFor(
  vm: VmProcess,
  done: (i: MigrationInfo) => boolean,
  what: string,
  timeoutMs = 60_000,
): Promise<MigrationInfo> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const info = await query(vm);
    if (done(info)) return info;
    if (Date.now() > end)
      assert.fail(`${vm.name}: ${what} not reached in ${timeoutMs} ms: ${JSON.stringify(info)}`);
    await sleep(50);
  }
}

const FINISHED = ['completed', 'failed', 'cancelled'];
export const finished = (i: MigrationInfo) => FINISHED.includes(i.status ?? '');

export async function deviceStates(vm: VmProcess): Promise<Record<string, string>> {
  const info = await vm.qmp.execute<VfioInfo>('x-query-vfio');
  return Object.fromEntries(info.devices.map((d) => [d.id, d['device-state']]));
}
