/**
 * Interoperability with a real QEMU 7.2 (skipped when qemu-system-x86_64 is absent), for a
 * VM configured like `-machine none -m 16M`: one RAM block "ram" of 16 MiB, no devices.
 *
 * - our source → a QEMU destination: the destination's memory (pmemsave) equals ours;
 * - a QEMU source → our destination: our memory equals what QEMU had loaded.
 *
 * QEMU 7.2 predates MIG_CMD_SWITCHOVER_START, so our side runs with the migration property
 * `send-switchover-start` off, as QEMU itself does for machine types up to 9.2.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RunState } from '../../src/guest/index.ts';
import {
  GUEST_RAM,
  patternFiles,
  patternRam,
  qemu72Migration,
  qemuGuestRam,
  qemuOrSkip,
  setReturnPath,
  sourceArgs,
  startQemu,
  startQemuDestination,
  waitMigration,
} from '../helpers/qemu.ts';
import { createVmHalf, listenLoopback } from './vm-half.ts';

const { qemu, skip } = qemuOrSkip('QEMU interop tests');
const QEMU72 = qemu72Migration();

test(
  'our source migrates into a QEMU 7.2 destination: its memory equals ours',
  { skip, timeout: 60_000 },
  async (t) => {
    const src = await createVmHalf({ role: 'source', ramMiB: GUEST_RAM >> 20, options: QEMU72 });
    t.after(() => src.destroy());
    const { q, uri } = await startQemuDestination(qemu!, t);

    src.migration.outgoing.migrate(uri);
    assert.equal(
      await src.migration.outgoing.whenFinished(),
      'completed',
      src.migration.outgoing.error?.message,
    );
    const info = await waitMigration(q.qmp);
    assert.equal(info.status, 'completed', q.log);
    // globalstate said "running": QEMU starts the guest.
    const status = await q.qmp.execute<{ status: string }>('query-status');
    assert.equal(status.status, 'running');

    const ours = Buffer.from(src.memory.block('ram')!.read(0, GUEST_RAM));
    assert.ok((await qemuGuestRam(q)).equals(ours), 'QEMU guest RAM equals ours');
    assert.doesNotMatch(q.log, /error|vmdescription/i);
    assert.equal(src.runControl.runState, RunState.POSTMIGRATE);
  },
);

test(
  'a QEMU 7.2 source migrates into our destination: our memory equals its guest',
  { skip, timeout: 60_000 },
  async (t) => {
    const dst = await createVmHalf({
      role: 'destination',
      ramMiB: GUEST_RAM >> 20,
      populateSeed: false,
      options: QEMU72,
    });
    t.after(() => dst.destroy());
    const uri = await listenLoopback(dst);
    const q = await startQemu(qemu!, sourceArgs, { t, files: patternFiles() });
    await setReturnPath(q.qmp);
    await q.qmp.execute('migrate', { uri });

    assert.equal(
      await dst.migration.incoming.whenFinished(),
      'completed',
      dst.migration.incoming.error?.message,
    );
    const info = await waitMigration(q.qmp);
    assert.equal(info.status, 'completed', q.log);
    // The source was started with -S: its globalstate "prelaunch" is what we take.
    assert.equal(dst.runControl.runState, RunState.PRELAUNCH);

    const ours = Buffer.from(dst.memory.block('ram')!.read(0, GUEST_RAM));
    assert.ok(ours.equals(patternRam()), 'our RAM equals what QEMU loaded');
    assert.deepEqual(dst.migration.incoming.warnings, []);
  },
);
