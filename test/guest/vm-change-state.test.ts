import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { RunState } from '../../src/guest/runstate.ts';
import { VmChangeStateHandlers } from '../../src/guest/vm-change-state.ts';
import { type VcpuPauser, type VmRunEvent, VmRunControl } from '../../src/guest/run-control.ts';

/** Registers handlers at priorities 2, 0, 1, 1 (two at 1; only some with a prepare). */
function traced(add: VmChangeStateHandlers['add'], trace: string[]): void {
  const cb = (tag: string) => (running: boolean, state: RunState) => {
    trace.push(`${tag}(${running ? 'run' : 'stop'},${state})`);
  };
  add({ name: 'c', priority: 2, prepare: cb('prep-c'), handler: cb('c') });
  add({ name: 'a', priority: 0, prepare: cb('prep-a'), handler: cb('a') });
  add({ name: 'b1', priority: 1, handler: cb('b1') });
  add({ name: 'b2', priority: 1, prepare: cb('prep-b2'), handler: cb('b2') });
}

test('start: every prepare in ascending priority, then every handler; stop: both descending', async () => {
  const handlers = new VmChangeStateHandlers();
  const trace: string[] = [];
  traced((s) => handlers.add(s), trace);
  assert.deepEqual(await handlers.notify(true, RunState.RUNNING), []);
  assert.deepEqual(trace, [
    'prep-a(run,running)',
    'prep-b2(run,running)',
    'prep-c(run,running)',
    'a(run,running)',
    'b1(run,running)',
    'b2(run,running)',
    'c(run,running)',
  ]);
  trace.length = 0;
  await handlers.notify(false, RunState.FINISH_MIGRATE);
  assert.deepEqual(trace, [
    'prep-c(stop,finish-migrate)',
    'prep-b2(stop,finish-migrate)',
    'prep-a(stop,finish-migrate)',
    'c(stop,finish-migrate)',
    'b2(stop,finish-migrate)',
    'b1(stop,finish-migrate)',
    'a(stop,finish-migrate)',
  ]);
});

test('async handlers run one after another, never overlapping', async () => {
  const handlers = new VmChangeStateHandlers();
  const trace: string[] = [];
  for (const [name, ms] of [
    ['slow', 30],
    ['fast', 1],
    ['mid', 10],
  ] as const) {
    handlers.add({
      name,
      priority: ms,
      prepare: async () => {
        trace.push(`>prep-${name}`);
        await sleep(ms);
        trace.push(`<prep-${name}`);
      },
      handler: async () => {
        trace.push(`>${name}`);
        await sleep(ms);
        trace.push(`<${name}`);
      },
    });
  }
  await handlers.notify(false, RunState.PAUSED);
  assert.deepEqual(trace, [
    '>prep-slow',
    '<prep-slow',
    '>prep-mid',
    '<prep-mid',
    '>prep-fast',
    '<prep-fast',
    '>slow',
    '<slow',
    '>mid',
    '<mid',
    '>fast',
    '<fast',
  ]);
});

test('failures are collected in call order and later handlers still run', async () => {
  const handlers = new VmChangeStateHandlers();
  const ran: string[] = [];
  handlers.add({
    name: 'dev0',
    priority: 0,
    prepare: () => {
      ran.push('prep-dev0');
      throw new Error('RUNNING_P2P refused');
    },
    handler: () => void ran.push('dev0'),
  });
  handlers.add({
    name: 'dev1',
    priority: 1,
    handler: async () => {
      ran.push('dev1');
      await sleep(1);
      throw new Error('EIO');
    },
  });
  handlers.add({ name: 'dev2', priority: 2, handler: () => void ran.push('dev2') });
  const failures = await handlers.notify(true, RunState.RUNNING);
  assert.deepEqual(ran, ['prep-dev0', 'dev0', 'dev1', 'dev2']);
  assert.deepEqual(
    failures.map((f) => [f.name, f.priority, f.phase, (f.error as Error).message]),
    [
      ['dev0', 0, 'prepare', 'RUNNING_P2P refused'],
      ['dev1', 1, 'handler', 'EIO'],
    ],
  );
});

test('a removed handler is not called, even when removed during the walk', async () => {
  const handlers = new VmChangeStateHandlers();
  const ran: string[] = [];
  const late = handlers.add({ name: 'late', priority: 9, handler: () => void ran.push('late') });
  handlers.add({
    name: 'first',
    priority: 1,
    handler: () => {
      ran.push('first');
      late.remove();
    },
  });
  const gone = handlers.add({ name: 'gone', priority: 5, handler: () => void ran.push('gone') });
  gone.remove();
  gone.remove();
  assert.equal(handlers.size, 2);
  await handlers.notify(true, RunState.RUNNING);
  assert.deepEqual(ran, ['first']);
  assert.equal(handlers.size, 1);
  {
    using _scoped = handlers.add({ priority: 0, handler: () => {} });
    assert.equal(handlers.size, 2);
  }
  assert.equal(handlers.size, 1);
  assert.throws(() => handlers.add({ priority: NaN, handler: () => {} }), /priority NaN/);
});

/** A VM whose vCPUs, handlers and events all write into one trace. */
function tracedVm(): { vm: VmRunControl; trace: string[] } {
  const trace: string[] = [];
  const vcpus: VcpuPauser = {
    async pauseAll() {
      trace.push('>pause');
      await sleep(5);
      trace.push('<pause');
    },
    resumeAll() {
      trace.push('resume');
    },
  };
  const vm = new VmRunControl({ vcpus });
  vm.onEvent((e: VmRunEvent) => trace.push(`event ${e.event}`));
  vm.addVmChangeStateHandler({
    name: 'dev',
    priority: 0,
    prepare: (running, state) => void trace.push(`prep ${running} ${state} [${vm.runState}]`),
    handler: async (running, state) => {
      await sleep(1);
      trace.push(`main ${running} ${state} [${vm.runState}]`);
    },
  });
  return { vm, trace };
}

test('vmStart then vmStop follow vm_start and do_vm_stop step by step', async () => {
  const { vm, trace } = tracedVm();
  assert.deepEqual(await vm.vmStart(), []);
  assert.deepEqual(trace, [
    'event RESUME',
    'prep true running [running]',
    'main true running [running]',
    'resume',
  ]);
  assert.deepEqual(vm.queryStatus(), { running: true, status: 'running' });
  trace.length = 0;
  assert.deepEqual(await vm.vmStop(RunState.FINISH_MIGRATE), []);
  assert.deepEqual(trace, [
    '>pause',
    '<pause',
    'prep false finish-migrate [finish-migrate]',
    'main false finish-migrate [finish-migrate]',
    'event STOP',
  ]);
  assert.deepEqual(vm.queryStatus(), { running: false, status: 'finish-migrate' });
});

test('stopping a stopped VM and starting a running one do nothing', async () => {
  const { vm, trace } = tracedVm();
  await vm.vmStop(RunState.PAUSED);
  assert.equal(vm.runState, 'prelaunch');
  await vm.vmStart();
  trace.length = 0;
  await vm.vmStart();
  assert.deepEqual(trace, []);
  await vm.vmStop();
  trace.length = 0;
  await vm.vmStop(RunState.FINISH_MIGRATE);
  assert.deepEqual(trace, []);
  assert.equal(vm.runState, 'paused');
  // vm_stop_force_state moves a stopped VM without notifying anyone.
  await vm.vmStopForceState(RunState.FINISH_MIGRATE);
  assert.deepEqual(trace, []);
  assert.equal(vm.runState, 'finish-migrate');
  await vm.vmStopForceState(RunState.POSTMIGRATE);
  await assert.rejects(vm.vmStopForceState(RunState.INMIGRATE), /'postmigrate' -> 'inmigrate'/);
});

test('stops and starts issued together run one at a time, in order', async () => {
  const { vm, trace } = tracedVm();
  const all = Promise.all([vm.vmStart(), vm.vmStop(), vm.vmStart()]);
  await all;
  assert.deepEqual(
    trace.filter((l) => l.startsWith('event') || l === 'resume' || l === '>pause'),
    ['event RESUME', 'resume', '>pause', 'event STOP', 'event RESUME', 'resume'],
  );
  assert.equal(vm.runState, 'running');
});

test('handler failures come back from vmStop; the VM is stopped anyway', async () => {
  const vm = new VmRunControl({ initial: RunState.RUNNING });
  const events: string[] = [];
  vm.onEvent((e) => events.push(e.event));
  vm.addVmChangeStateHandler({
    name: 'vfio dev0',
    priority: 0,
    handler: () => Promise.reject(new Error('STOP_COPY: EIO')),
  });
  const failures = await vm.vmStop(RunState.FINISH_MIGRATE);
  assert.equal(failures.length, 1);
  assert.equal(failures[0]!.name, 'vfio dev0');
  assert.equal(vm.runState, 'finish-migrate');
  assert.deepEqual(events, ['STOP']);
});

test('a VM stopped from suspended restarts suspended, without resuming vCPUs', async () => {
  const { vm, trace } = tracedVm();
  await vm.vmStart();
  vm.runstateSet(RunState.SUSPENDED);
  await vm.vmStop(RunState.PAUSED);
  assert.ok(!trace.slice(4).includes('>pause'), 'suspended vCPUs are already stopped');
  trace.length = 0;
  await vm.vmStart();
  assert.equal(vm.runState, 'suspended');
  assert.ok(!trace.includes('resume'));
  assert.deepEqual(vm.queryStatus(), { running: false, status: 'suspended' });
  const quiet: string[] = [];
  vm.onEvent((e) => quiet.push(e.event));
  await vm.vmShutdown();
  assert.equal(vm.runState, 'shutdown');
  assert.deepEqual(quiet, [], 'vm_shutdown sends no STOP');
});
