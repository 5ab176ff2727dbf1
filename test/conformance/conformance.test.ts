import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ALL_CHECKS, runConformance } from '../../src/conformance/index.ts';
import { createSimDevice } from '../../src/device/sim/index.ts';
import { runCli } from '../helpers/repo.ts';
import { BREAKAGES } from './broken-devices.ts';

const FLAG_SETS = ['stop-copy', 'stop-copy+p2p', 'stop-copy+pre-copy', 'stop-copy+p2p+pre-copy'];
const MODELS = ['sim:mtty', 'sim:nic,state-size=1M', 'sim:gpu,state-size=2M,dirty-rate=64M'];

for (const model of MODELS) {
  test(`conformance passes for ${model} with every flag set`, async () => {
    for (const flags of FLAG_SETS) {
      const spec = `${model},flags=${flags}`;
      const report = await runConformance(ALL_CHECKS, () =>
        Promise.resolve(createSimDevice(spec, { id: 'dut' })),
      );
      const failed = report.results.filter((r) => r.status === 'fail');
      assert.deepEqual(failed, [], spec);
      const skipped = report.results.filter((r) => r.status === 'skip').map((r) => r.id);
      if (flags.includes('pre-copy')) assert.deepEqual(skipped, [], `${spec}: nothing skipped`);
    }
  });
}

test('every check is caught out by a device broken the way it guards against', async () => {
  const covered = new Set(BREAKAGES.map((b) => b.check));
  assert.deepEqual(
    ALL_CHECKS.map((c) => c.id).filter((id) => !covered.has(id)),
    [],
    'every check has a breakage',
  );
  for (const breakage of BREAKAGES) {
    const report = await runConformance(
      ALL_CHECKS,
      () => breakage.device('sim:nic,state-size=1M,flags=stop-copy+p2p+pre-copy'),
      { only: [breakage.check], timeoutMs: 3000 },
    );
    const [result] = report.results;
    assert.equal(result?.status, 'fail', `${breakage.check} did not catch: ${breakage.what}`);
    assert.ok(result.detail && result.detail.length > 10, 'a failure says what went wrong');
  }
});

test('conformance CLI: table and exit code 0 for a good device, JSON on request', async () => {
  const res = await runCli(['conformance', '--device', 'sim:nic,state-size=1M']);
  assert.equal(res.code, 0, res.stdout + res.stderr);
  assert.match(res.stdout, /PASS {2}set\.paths/);
  assert.match(res.stdout, /26 passed, 0 failed, 0 skipped/);
  const json = await runCli(['conformance', '--device', 'sim:mtty,flags=stop-copy', '--json']);
  assert.equal(json.code, 0);
  const report = JSON.parse(json.stdout) as { failed: number; skipped: number; flags: string };
  assert.equal(report.flags, 'STOP_COPY');
  assert.equal(report.failed, 0);
  assert.ok(report.skipped > 0, 'pre-copy checks are skipped for a stop-copy-only device');
});

test('conformance CLI: a bad device spec is refused with the key named', async () => {
  const res = await runCli(['conformance', '--device', 'sim:nic,colour=red']);
  assert.notEqual(res.code, 0);
  assert.match(res.stderr, /colour/);
  const model = await runCli(['conformance', '--device', 'sim:toaster']);
  assert.match(model.stderr, /toaster/);
});
