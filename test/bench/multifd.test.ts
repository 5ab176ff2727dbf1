import assert from 'node:assert/strict';
import { test } from 'node:test';
import { phasesOf } from '../../src/bench/multifd-downtime.ts';
import type { DowntimeInfo } from '../../src/bench/multifd-downtime.ts';
import { runCli } from '../helpers/repo.ts';

const GPU = '0000:00:05.0/vfio';

test('phasesOf: the downtime split from both sides’ checkpoints and spans', () => {
  const src: DowntimeInfo = {
    checkpoints: [
      { checkpoint: 'src-downtime-start', at: 1000 },
      { checkpoint: 'src-vm-stopped', at: 1010 },
      { checkpoint: 'src-iterable-saved', at: 1300 },
      { checkpoint: 'src-non-iterable-saved', at: 1302 },
      { checkpoint: 'src-downtime-stop', at: 1500 },
    ],
    spans: [
      { kind: 'iterable', idstr: 'ram', start: 1010, end: 1040 },
      { kind: 'iterable', idstr: GPU, start: 1040, end: 1041 },
      { kind: 'precopy-thread', idstr: GPU, start: 1010, end: 1290 },
    ],
  };
  const dst: DowntimeInfo = {
    checkpoints: [{ checkpoint: 'dst-precopy-loadvm-completed', at: 1450 }],
    spans: [
      { kind: 'load-thread', idstr: 'of gpu0', start: 1001, end: 1440 },
      { kind: 'non-iterable', idstr: 'globalstate', start: 1445, end: 1446 },
    ],
  };
  const vfio = { devices: [{ id: 'gpu0', idstr: GPU, multifd: { 'config-load-ms': 3 } }] };
  assert.deepEqual(phasesOf(500, src, dst, vfio), {
    downtimeMs: 500,
    stopMs: 10,
    iterablesMs: 290,
    ramMs: 30,
    deviceReadMs: 280,
    configSaveMs: 2,
    destinationTailMs: 148,
    deviceWriteMs: 439,
    configLoadMs: 3,
    startMs: 50,
  });
  assert.throws(() => phasesOf(500, { ...src, checkpoints: [] }, dst, vfio), /no src-vm-stopped/);
});

interface MultifdJson {
  results: {
    devices: number;
    path: string;
    channels: number;
    phases: Record<string, number>;
  }[];
  speedup: Record<string, number>;
}

test('bench multifd --json: one device over each path, every phase measured', async () => {
  const r = await runCli(
    [
      ...['bench', 'multifd', '--devices', '1', '--state-size', '8M', '--channels', '2'],
      ...['--repetitions', '1', '--json'],
    ],
    120_000,
  );
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as MultifdJson;
  assert.deepEqual(
    j.results.map((x) => [x.devices, x.path, x.channels]),
    [
      [1, 'main', 2],
      [1, 'multifd', 2],
    ],
  );
  for (const x of j.results) {
    assert.ok(x.phases.downtimeMs! > 0, JSON.stringify(x));
    assert.ok(x.phases.deviceReadMs! > 0, `${x.path}: the device's save was timed`);
    assert.ok(x.phases.deviceWriteMs! > 0, `${x.path}: the device's load was timed`);
  }
  assert.ok(j.speedup['1']! > 0);
});
