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

test('bench ram refuses more than one channel until multifd exists, and bad sizes', async () => {
  const r = await runCli(['bench', 'ram', '--channels', '2', '--json'], 30_000);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /--channels 2: multifd is not implemented yet/);
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
