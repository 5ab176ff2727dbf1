import assert from 'node:assert/strict';
import { test } from 'node:test';
import { findQemu } from '../../src/bench/qemu.ts';
import { runCli } from '../helpers/repo.ts';

interface RamJson {
  sizeBytes: number;
  oursSeconds: number;
  rawSeconds: number;
  qemuSeconds: number | null;
  oursVsRaw: number;
  oursVsQemu: number | null;
  destPeakRssBytes: number | null;
  samples: { ours: { samples: number[] }; raw: { samples: number[] } };
}

test('bench ram --json: ours, raw and the ratios from one small run', async () => {
  const r = await runCli(
    ['bench', 'ram', '--size', '16M', '--repetitions', '2', '--warmup', '0', '--no-qemu', '--json'],
    120_000,
  );
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as RamJson;
  assert.equal(j.sizeBytes, 16 << 20);
  assert.equal(j.samples.ours.samples.length, 2);
  assert.equal(j.samples.raw.samples.length, 2);
  assert.ok(j.oursSeconds > 0 && j.rawSeconds > 0);
  assert.equal(j.oursVsRaw, j.rawSeconds / j.oursSeconds);
  assert.equal(j.qemuSeconds, null);
  assert.equal(j.oursVsQemu, null);
  // The destination held the guest's RAM (and was checked against the image).
  assert.ok(j.destPeakRssBytes === null || j.destPeakRssBytes > 16 << 20);
});

test('bench ram --channels 2: multifd on both sides, the raw copy over 2 sockets', async () => {
  const r = await runCli(
    [
      ...['bench', 'ram', '--size', '16M', '--channels', '2'],
      ...['--repetitions', '1', '--warmup', '0', '--no-qemu', '--json'],
    ],
    120_000,
  );
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as RamJson & { channels: number; rawSockets: number };
  assert.equal(j.channels, 2);
  assert.equal(j.rawSockets, 2);
  // The destination's RAM digest was checked against the image: multifd moved it whole.
  assert.ok(j.oursSeconds > 0 && j.rawSeconds > 0);
  assert.equal(j.samples.ours.samples.length, 1);
});

test('bench ram refuses a channel count outside 1-255, and bad sizes', async () => {
  const r = await runCli(['bench', 'ram', '--channels', '256', '--json'], 30_000);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /--channels 256: an integer from 1 to 255 is needed/);
  const s = await runCli(['bench', 'ram', '--size', '1000K'], 30_000);
  assert.notEqual(s.code, 0);
  assert.match(s.stderr, /not a whole number of MiB/);
});

test('bench ram with QEMU installed: QEMU migrates the same image, timed the same way', async (t) => {
  if (findQemu() === null) {
    t.skip('qemu-system-x86_64 not found');
    return;
  }
  const r = await runCli(
    ['bench', 'ram', '--size', '16M', '--repetitions', '1', '--warmup', '0', '--json'],
    120_000,
  );
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as RamJson & { machine: { qemu: string | null } };
  assert.ok(j.qemuSeconds !== null && j.qemuSeconds > 0);
  assert.equal(j.oursVsQemu, j.oursSeconds / j.qemuSeconds);
  assert.match(j.machine.qemu ?? '', /qemu-system-x86_64$/);
});
