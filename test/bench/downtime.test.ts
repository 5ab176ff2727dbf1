import assert from 'node:assert/strict';
import { test } from 'node:test';
import { downtimeRun, nearIdeal } from '../../src/bench/downtime.ts';
import type { VfioInfo } from '../../src/cli/demo/qmp-types.ts';
import { runCli } from '../helpers/repo.ts';

function vfioWith(stopCopy: number[]): VfioInfo {
  return {
    transferred: 0,
    devices: stopCopy.map((n, i) => ({
      id: `d${i}`,
      idstr: `0000:00:0${i}.0/vfio`,
      flags: null,
      'device-state': 'stop',
      blocker: null,
      bytes: { precopy: 1000, 'stop-copy': n },
      'state-log': [],
    })),
  };
}

test('ideal downtime: bytes sent while stopped at the bandwidth measured while running', () => {
  // 10 MiB of RAM and 6 MiB of device state while stopped; 400 MiB in 1 s before.
  const MiB = 1 << 20;
  const info = {
    'setup-time': 10,
    'total-time': 1060,
    downtime: 50,
    ram: { transferred: 416 * MiB, 'downtime-bytes': 10 * MiB },
  };
  const run = downtimeRun(info, vfioWith([4 * MiB, 2 * MiB]));
  assert.equal(run.stopBytes, 16 * MiB);
  assert.equal(run.bandwidth, 400 * MiB);
  assert.equal(run.idealMs, 40);
  assert.equal(run.downtimeMs, 50);
  assert.equal(nearIdeal(90, 40), true);
  assert.equal(nearIdeal(91, 40), false);
});

test('bench downtime --json: one scenario, its downtime against its limit and ideal', async () => {
  const r = await runCli(
    ['bench', 'downtime', '--scenario', 'zero-heavy', '--repetitions', '1', '--json'],
    120_000,
  );
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as {
    scenarios: {
      scenario: string;
      downtimeMs: number;
      downtimeLimitMs: number;
      idealDowntimeMs: number;
      stopBytes: number;
      withinLimit: boolean;
      runs: unknown[];
    }[];
  };
  assert.equal(j.scenarios.length, 1);
  const s = j.scenarios[0]!;
  assert.equal(s.scenario, 'zero-heavy');
  assert.equal(s.runs.length, 1);
  assert.equal(s.downtimeLimitMs, 300);
  assert.ok(s.downtimeMs > 0 && s.stopBytes > 0 && s.idealDowntimeMs > 0);
  assert.equal(s.withinLimit, s.downtimeMs <= 300);
  const bad = await runCli(['bench', 'downtime', '--scenario', 'nope'], 30_000);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /"nope" is not one of ram-and-devices, zero-heavy, large-device-state/);
});
