import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DemoMultifdResult } from '../../src/cli/demo/report.ts';
import { runCli } from '../helpers/repo.ts';

interface DemoJson {
  status: string;
  verified: boolean;
  multifd: DemoMultifdResult | null;
}

const SMALL = [
  ...['--memory', '128M', '--vcpus', '1', '--dirty-rate', '16', '--hot-size', '32M'],
  ...['--device', 'sim:nic,state-size=2M', '--device', 'sim:gpu,state-size=16M'],
  ...['--warmup', '200', '--json'],
];

test('demo --multifd 3: verified, and RAM and device state went over all three channels', async () => {
  const r = await runCli(['demo', ...SMALL, '--multifd', '3'], 60_000);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as DemoJson;
  assert.equal(j.status, 'completed');
  assert.equal(j.verified, true);
  assert.ok(j.multifd !== null);
  assert.deepEqual(
    j.multifd.channels.map((c) => c.id),
    [0, 1, 2],
  );
  for (const c of j.multifd.channels) {
    assert.ok(c.ramPackets > 0, `channel ${c.id} carried RAM`);
    // Every packet the source wrote arrived; the handshake is not a packet the receiver counts.
    assert.equal(c.sent, c.received + 1, `channel ${c.id}`);
  }
  assert.ok(
    j.multifd.channels.some((c) => c.deviceStatePackets > 0),
    'device state over multifd',
  );
  assert.ok(j.multifd.bytes > 0);
});

test('demo without --multifd has no multifd figures; a bad channel count is refused', async () => {
  const r = await runCli(['demo', ...SMALL], 60_000);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as DemoJson;
  assert.equal(j.verified, true);
  assert.equal(j.multifd, null);
  const bad = await runCli(['demo', '--multifd', '0'], 30_000);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /"0" is not a channel count from 1 to 255/);
});
