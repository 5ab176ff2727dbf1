/**
 * The QMP fault commands on a VM in this process: what x-inject-fault arms (and says it
 * armed in x-query-faults), what it refuses and with which words, device faults reaching the
 * simulated device, and x-clear-faults.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import type { SimDevice } from '../../src/device/sim/index.ts';
import { QmpClient, QmpError, QmpServer } from '../../src/qmp/index.ts';
import { registerVmCommands } from '../../src/qmp/commands/vm-commands.ts';
import { MigState } from '../../src/uapi/index.ts';
import { Vm, parseVmConfig } from '../../src/vm/index.ts';

const CONFIG = parseVmConfig({
  machine: 'none',
  'ram-blocks': [{ idstr: 'ram', size: '1M' }],
  vcpus: 0,
  devices: [{ id: 'nic0', model: 'sim:nic,state-size=64K,chunk-size=16K,dma-rate=0' }],
});

async function vmWithQmp(t: TestContext, incoming?: string): Promise<{ vm: Vm; qmp: QmpClient }> {
  const vm = await Vm.create(CONFIG, { deviceTickMs: 0, incoming });
  const server = new QmpServer({ onQuit: () => undefined });
  registerVmCommands(server, vm);
  const qmp = await QmpClient.connect(await server.listen('tcp:127.0.0.1:0'), { timeoutMs: 5000 });
  t.after(async () => {
    await qmp.close();
    await server.close();
    await vm.destroy();
  });
  return { vm, qmp };
}

async function refused(qmp: QmpClient, args: Record<string, unknown>, desc: RegExp) {
  await assert.rejects(qmp.execute('x-inject-fault', args), (err: unknown) => {
    assert.ok(err instanceof QmpError);
    assert.equal(err.errorClass, 'GenericError');
    assert.match(err.desc, desc);
    return true;
  });
}

interface FaultsInfo {
  phase: { outgoing: string | null; incoming: string | null };
  faults: { id: number; type: string; description: string; state: string }[];
}

test('x-inject-fault arms channel and load faults; x-query-faults lists them; x-clear-faults disarms', async (t) => {
  const { qmp } = await vmWithQmp(t);
  const a = await qmp.execute('x-inject-fault', {
    type: 'channel',
    action: 'cut',
    bytes: 100,
    direction: 'out',
  });
  const b = await qmp.execute('x-inject-fault', {
    type: 'channel',
    side: 'incoming',
    action: 'stall',
    direction: 'out',
    phase: 'after-eof',
    ms: 500,
  });
  const c = await qmp.execute('x-inject-fault', {
    type: 'load',
    section: 'ram',
    'section-type': 'part',
    nth: 3,
  });
  assert.deepEqual([a, b, c], [{ id: 1 }, { id: 2 }, { id: 3 }]);
  const info = await qmp.execute<FaultsInfo>('x-query-faults');
  assert.deepEqual(info.phase, { outgoing: null, incoming: null });
  assert.deepEqual(
    info.faults.map((f) => [f.type, f.description, f.state]),
    [
      ['channel', 'outgoing: cut at byte 100 out', 'armed'],
      ['channel', 'incoming: stall out 500 ms at after-eof', 'armed'],
      ['load', "load of PART 'ram' #3 fails", 'armed'],
    ],
  );
  assert.deepEqual(await qmp.execute('x-clear-faults'), { cleared: 3 });
  const after = await qmp.execute<FaultsInfo>('x-query-faults');
  assert.deepEqual(
    after.faults.map((f) => f.state),
    ['cleared', 'cleared', 'cleared'],
  );
});

test('a VM waiting in inmigrate arms faults on its incoming side by default', async (t) => {
  const { qmp } = await vmWithQmp(t, 'defer');
  await qmp.execute('x-inject-fault', { type: 'channel', action: 'reset', phase: 'setup' });
  const info = await qmp.execute<FaultsInfo>('x-query-faults');
  assert.equal(info.faults[0]!.description, 'incoming: reset at setup');
});

test('x-inject-fault refuses what cannot work, saying why', async (t) => {
  const { qmp } = await vmWithQmp(t);
  const channel = { type: 'channel', action: 'cut' };
  await refused(qmp, channel, /needs exactly one of 'bytes', 'phase', 'now'/);
  await refused(qmp, { ...channel, phase: 'setup', now: true }, /exactly one of/);
  await refused(qmp, { ...channel, bytes: 10 }, /'bytes' needs a 'direction'/);
  await refused(qmp, { ...channel, now: true }, /no outgoing migration channel is open/);
  await refused(
    qmp,
    { ...channel, phase: 'setup', section: 'ram' },
    /'section' does not apply to channel faults/,
  );
  await refused(
    qmp,
    { type: 'channel', action: 'explode', now: true },
    /action must be one of cut, reset, stall, delay, kill/,
  );
  await refused(qmp, { type: 'channel', action: 'delay', phase: 'setup' }, /a delay needs ms > 0/);
  await refused(
    qmp,
    { ...channel, side: 'incoming', phase: 'switchover-wait' },
    /the destination cannot see the source's switchover wait/,
  );
  await refused(qmp, { type: 'load' }, /a load fault needs 'section'/);
  await refused(qmp, { type: 'device', id: 'gpu9', action: 'error' }, /Device 'gpu9' not found/);
  await refused(
    qmp,
    { type: 'device', id: 'nic0', action: 'fail-arc' },
    /needs 'arc' \(1-based\) or 'reaching'/,
  );
  await refused(
    qmp,
    { type: 'device', id: 'nic0', action: 'fail-arc', reaching: 'NOWHERE' },
    /unknown device state "NOWHERE"/,
  );
  await refused(
    qmp,
    { type: 'device', id: 'nic0', action: 'error', errno: 'EWHAT' },
    /errno 'EWHAT' is not one of/,
  );
  await refused(qmp, { type: 'device', id: 'nic0', action: 'truncate-stream' }, /needs 'length'/);
  assert.deepEqual((await qmp.execute<FaultsInfo>('x-query-faults')).faults, [], 'nothing armed');
});

test('device faults reach the simulated device; x-clear-faults clears them', async (t) => {
  const { vm, qmp } = await vmWithQmp(t);
  const nic = vm.devices[0] as SimDevice;
  await qmp.execute('x-inject-fault', {
    type: 'device',
    id: 'nic0',
    action: 'fail-arc',
    reaching: 'stop',
    errno: 'EIO',
  });
  await assert.rejects(nic.setState(MigState.STOP), /EIO/);
  await qmp.execute('x-inject-fault', { type: 'device', id: 'nic0', action: 'error' });
  await qmp.execute('x-clear-faults');
  await nic.setState(MigState.STOP);
  assert.equal(nic.state, MigState.STOP);
});
