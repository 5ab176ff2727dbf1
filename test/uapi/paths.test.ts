import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LEGAL_FLAG_SETS, flagsName } from '../../src/uapi/index.ts';
import { runCli } from '../helpers/repo.ts';
import { expectedOutcome, kernelTable } from './kernel-table.ts';

const FLAG_ARGS: Record<string, string> = {
  STOP_COPY: 'stop-copy',
  'STOP_COPY|P2P': 'stop-copy,p2p',
  'STOP_COPY|PRE_COPY': 'stop-copy,pre-copy',
  'STOP_COPY|P2P|PRE_COPY': 'stop-copy,p2p,pre-copy',
};

for (const flags of LEGAL_FLAG_SETS) {
  const name = flagsName(flags);
  test(`uapi paths --json equals the kernel for ${name}, every pair`, async () => {
    const res = await runCli(['uapi', 'paths', '--flags', FLAG_ARGS[name]!, '--json']);
    assert.equal(res.code, 0, res.stderr);
    const got = JSON.parse(res.stdout) as Record<string, Record<string, unknown>>;
    const derived = kernelTable.derived[name]!;
    const fromStates = [...derived.settable_states, 'ERROR'];
    assert.deepEqual(Object.keys(got).sort(), [...fromStates].sort());
    let pairs = 0;
    for (const from of fromStates) {
      const row = derived.full_paths[from]!;
      assert.equal(Object.keys(got[from]!).length, 8);
      for (const [to, entry] of Object.entries(row)) {
        assert.deepEqual(got[from]![to], expectedOutcome(entry, from), `${name}: ${from} -> ${to}`);
        pairs++;
      }
    }
    assert.equal(pairs, fromStates.length * 8);
  });
}

test('uapi paths refuses an undefined flag combination with a clear error', async () => {
  const res = await runCli(['uapi', 'paths', '--flags', 'p2p,pre-copy']);
  assert.notEqual(res.code, 0);
  assert.match(res.stderr, /stop-copy is mandatory/);
  const bad = await runCli(['uapi', 'paths', '--flags', 'stop-copy,turbo']);
  assert.match(bad.stderr, /unknown migration flag "turbo"/);
});

test('uapi paths prints a readable table without --json', async () => {
  const res = await runCli(['uapi', 'paths', '--flags', 'stop-copy,p2p,pre-copy']);
  assert.equal(res.code, 0);
  assert.match(res.stdout, /from PRE_COPY\n/);
  assert.match(res.stdout, /to STOP_COPY\s+PRE_COPY -> PRE_COPY_P2P -> STOP_COPY/);
  assert.match(res.stdout, /to PRE_COPY\s+EINVAL/);
});
