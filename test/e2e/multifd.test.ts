/**
 * Multifd between two processes (qemu-migration.md §4): guest RAM and the state of several
 * devices over 1, 2 and 4 channels next to the main channel, with channels slowed on purpose
 * on either side so that packets of a device arrive out of order and RAM rounds race; every
 * migration ends with the destination's digests equal to the source's at switchover.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { MultifdInfo } from '../../src/cli/demo/qmp-types.ts';
import { E2e, deviceStates, digest, finished, runStatus, waitFor } from './harness.ts';
import {
  MULTIFD_RUNNING,
  devicesMultifd,
  multifdGuest,
  multifdPair,
  slowChannel,
} from './multifd-harness.ts';

for (const channels of [1, 2, 4]) {
  test(`${channels} multifd channel${channels > 1 ? 's' : ''}, some slowed on purpose: RAM and three devices arrive whole`, async (t) => {
    const e = new E2e(t);
    // Two channels: an ARM guest, whose device configs load after the iterables.
    const config = multifdGuest(channels === 2 ? { target: 'aarch64' } : {});
    const { src, dst, uri } = await multifdPair(e, config, channels);
    await slowChannel(src, 'outgoing', 0, 3);
    if (channels > 1) await slowChannel(dst, 'incoming', channels - 1, 2);
    await src.qmp.execute('migrate', { uri });
    const info = await waitFor(src, finished, 'the end of the migration');
    assert.equal(info.status, 'completed', JSON.stringify(info));
    assert.equal((await waitFor(dst, finished, 'the incoming side')).status, 'completed');
    const [a, b] = await Promise.all([digest(src), digest(dst)]);
    assert.equal(b.ram.sha256, a.ram.sha256, 'guest RAM');
    assert.deepEqual(b.devices, a.devices, 'every device state');

    // RAM and device state went on every channel; the main channel carried little of it.
    const m = await dst.qmp.execute<MultifdInfo>('x-query-multifd');
    assert.equal(m.incoming.length, channels);
    for (const c of m.incoming) {
      assert.ok(c['ram-packets'] > 0, `channel ${c.id} carried RAM`);
      assert.ok(c.syncs >= 2, `channel ${c.id} synced at setup and at the end of a round`);
    }
    assert.ok(m.incoming.some((c) => c['device-state-packets'] > 0));
    const sent = (await src.qmp.execute<MultifdInfo>('x-query-multifd')).outgoing;
    assert.deepEqual(
      sent.map((c) => c.packets),
      m.incoming.map((c) => c.packets + 1),
      'every packet the source wrote (and its handshake) arrived',
    );
    assert.ok((info.ram?.['multifd-bytes'] ?? 0) > (info.ram?.['normal-bytes'] ?? 0));
    const devices = await devicesMultifd(dst);
    assert.ok(devices.gpu0!.packets >= 17, 'over 16 MiB in 1 MiB packets, then the config');
    for (const [id, d] of Object.entries(devices)) {
      assert.ok(d.packets > 0 && d['config-loaded'], `${id} came over multifd`);
    }
    if (channels === 4) {
      assert.ok(devices.gpu0!['out-of-order'] > 0, 'a slow channel reordered the gpu’s packets');
    }
    await dst.qmp.execute('cont');
    assert.equal(await runStatus(dst), 'running');
    assert.deepEqual(await deviceStates(dst), MULTIFD_RUNNING);
  });
}
