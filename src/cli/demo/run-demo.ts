/**
 * `vfio-migrate demo`: a destination and a source VM process on this host, a live migration of
 * the running guest (vCPUs dirtying RAM, devices changing state and doing DMA) over loopback
 * TCP, live progress, QEMU's statistics, and the proof that nothing was lost: the source's
 * digests at switchover equal the destination's after the load. The destination runs with -S
 * so that its state can be digested before the guest resumes; then it is continued.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pc from 'picocolors';
import { migrationIsFinished } from '../../migration/index.ts';
import { listenIncoming } from '../incoming.ts';
import { VmProcess } from '../vm-process.ts';
import type { DemoOptions } from './options.ts';
import { demoVmConfig } from './options.ts';
import { ProgressView } from './progress.ts';
import type { MigrationInfo, MultifdInfo, StateDigest, VfioInfo } from './qmp-types.ts';
import { buildResult, renderResult } from './report.ts';
import type { DemoResult } from './report.ts';

const POLL_MS = 250;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const say = (s: string) => {
    if (!o.json) process.stdout.write(s + '\n');
  };
  const dir = mkdtempSync(join(tmpdir(), 'vfio-migrate-demo-'));
  const config = demoVmConfig(o);
  const procs: VmProcess[] = [];
  try {
    say(pc.bold('Starting a destination and a source VM process'));
    // Multifd must be set on the destination before it listens (`-incoming defer`).
    const [dst, src] = await Promise.all([
      VmProcess.spawn({
        name: 'destination',
        dir,
        config,
        incoming: o.multifd === null ? 'tcp:127.0.0.1:0' : 'defer',
        paused: true,
      }),
      VmProcess.spawn({ name: 'source', dir, config }),
    ]);
    procs.push(dst, src);
    const caps = [
      { capability: 'events', state: true },
      { capability: 'return-path', state: true },
      ...(o.switchoverAck ? [{ capability: 'switchover-ack', state: true }] : []),
      ...(o.multifd !== null ? [{ capability: 'multifd', state: true }] : []),
    ];
    for (const vm of [src, dst]) {
      await vm.qmp.execute('migrate-set-capabilities', { capabilities: caps });
      if (o.multifd !== null) {
        await vm.qmp.execute('migrate-set-parameters', { 'multifd-channels': o.multifd });
      }
    }
    const uri = dst.ready.incoming ?? (await listenIncoming(dst.qmp));
    say(
      `  source pid ${src.ready.pid} (QMP ${src.ready.qmp}), destination pid ${dst.ready.pid} ` +
        `listening on ${uri}` +
        (o.multifd === null ? '' : `, multifd with ${o.multifd} channels`),
    );
    await src.qmp.execute('migrate-set-parameters', {
      'downtime-limit': o.downtimeLimit,
      'max-bandwidth': o.maxBandwidth * 1024 * 1024,
    });
    say(
      `  guest: ${o.memory} RAM, ${o.vcpus} vCPUs writing ${o.dirtyRate} MiB/s (${o.pattern}); ` +
        `devices: ${o.device.join(' ')}`,
    );
    say(`  letting the guest run for ${o.warmup} ms, then migrating`);
    await sleep(o.warmup);

    await src.qmp.execute('migrate', { uri });
    const info = await followMigration(src, o, say);
    const facts = {
      info,
      downtimeLimitMs: o.downtimeLimit,
      sourceVfio: await src.qmp.execute<VfioInfo>('x-query-vfio'),
      destinationVfio: null as VfioInfo | null,
      sourceDigest: null as StateDigest | null,
      destinationDigest: null as StateDigest | null,
      destinationRunState: null as string | null,
      sourceMultifd: null as MultifdInfo | null,
      destinationMultifd: null as MultifdInfo | null,
    };
    if (info.status === 'completed') {
      await waitIncomingDone(dst);
      say('Digesting source and destination state');
      [facts.sourceDigest, facts.destinationDigest] = await Promise.all([
        src.qmp.execute<StateDigest>('x-query-state-digest'),
        dst.qmp.execute<StateDigest>('x-query-state-digest'),
      ]);
      await dst.qmp.execute('cont');
      facts.destinationRunState = (
        await dst.qmp.execute<{ status: string }>('query-status')
      ).status;
      facts.destinationVfio = await dst.qmp.execute<VfioInfo>('x-query-vfio');
    }
    if (o.multifd !== null) {
      [facts.sourceMultifd, facts.destinationMultifd] = await Promise.all([
        src.qmp.execute<MultifdInfo>('x-query-multifd'),
        dst.qmp.execute<MultifdInfo>('x-query-multifd'),
      ]);
    }
    const result = buildResult(facts);
    if (o.json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    else process.stdout.write(renderResult(result));
    return result;
  } finally {
    await Promise.allSettled(procs.map((p) => p.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Polls query-migrate until the source's migration ends; cancels it past the timeout. */
async function followMigration(
  src: VmProcess,
  o: DemoOptions,
  say: (s: string) => void,
): Promise<MigrationInfo> {
  const view = o.json ? null : new ProgressView();
  say(pc.bold('Migrating'));
  const start = Date.now();
  let cancelled = false;
  for (;;) {
    const info = await src.qmp.execute<MigrationInfo>('query-migrate');
    const vfio = await src.qmp.execute<VfioInfo>('x-query-vfio');
    view?.update(Date.now() - start, info, vfio);
    if (migrationIsFinished(info.status ?? 'none')) {
      view?.done();
      return info;
    }
    // Past the switchover there is nothing to gain by cancelling: let it finish.
    if (!cancelled && info.status === 'active' && Date.now() - start > o.timeout) {
      say(pc.red(`  no convergence within ${o.timeout} ms: cancelling`));
      await src.qmp.execute('migrate_cancel');
      cancelled = true;
    }
    await sleep(POLL_MS);
  }
}

/** The destination finishes its side (load, cleanup) right after the source completes. */
async function waitIncomingDone(dst: VmProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const info = await dst.qmp.execute<MigrationInfo>('query-migrate');
    if (migrationIsFinished(info.status ?? 'none')) {
      if (info.status !== 'completed')
        throw new Error(`destination: ${info['error-desc'] ?? info.status}`);
      return;
    }
    await sleep(50);
  }
  throw new Error('destination: the incoming migration did not finish');
}
