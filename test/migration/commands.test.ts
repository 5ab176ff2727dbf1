/**
 * The QMP-facing surface of the core: capabilities and parameters with QEMU's names, defaults
 * and messages; migrate refusals (running, inmigrate, blockers, save_prepare);
 * pause-before-switchover with migrate-continue; migrate-incoming's checks; query-migrate per
 * status.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RunState } from '../../src/guest/index.ts';
import {
  DEFAULT_MIGRATION_PARAMETERS,
  MIGRATION_CAPABILITIES,
  MigrationOptions,
} from '../../src/migration/index.ts';
import { createVmHalf, listenLoopback, waitUntil } from './vm-half.ts';

/** The source learns of a destination failure only through the return path. */
const RP = { capabilities: [{ capability: 'return-path' as const, state: true }] };

test('query-migrate-capabilities lists every QEMU capability, all off', () => {
  const o = new MigrationOptions();
  const caps = o.queryCapabilities();
  assert.deepEqual(
    caps.map((c) => c.capability),
    [...MIGRATION_CAPABILITIES],
  );
  assert.ok(caps.every((c) => !c.state));
  assert.ok(caps.some((c) => c.capability === 'switchover-ack'));
  assert.ok(caps.some((c) => c.capability === 'mapped-ram'));
});

test('migrate-set-capabilities: implemented ones switch, others and bad sets are refused', () => {
  const o = new MigrationOptions();
  o.setCapabilities([
    { capability: 'return-path', state: true },
    { capability: 'switchover-ack', state: true },
    { capability: 'events', state: true },
    { capability: 'pause-before-switchover', state: true },
  ]);
  assert.equal(o.capability('switchover-ack'), true);
  assert.throws(() => o.setCapabilities([{ capability: 'return-path', state: false }]), {
    message: "Capability 'switchover-ack' requires capability 'return-path'",
  });
  assert.equal(o.capability('return-path'), true, 'nothing changed by a refused set');
  assert.throws(
    () => o.setCapabilities([{ capability: 'xbzrle', state: true }]),
    /^Error: Capability 'xbzrle' is not supported here \(supported: events, return-path/,
  );
  // Settable, so that a device's save_prepare can refuse the migration (VFIO does).
  o.setCapabilities([{ capability: 'postcopy-ram', state: true }]);
  o.setCapabilities([{ capability: 'postcopy-ram', state: false }]);
  assert.throws(() => o.setCapabilities([{ capability: 'background-snapshot', state: true }]), {
    message: 'Background-snapshot is not compatible with return-path',
  });
  // Switching an unsupported one off is harmless.
  o.setCapabilities([{ capability: 'xbzrle', state: false }]);
  assert.throws(() => o.setCapabilities([{ capability: 'bogus' as 'events', state: true }]), {
    message: "Parameter 'capability' does not accept value 'bogus'",
  });
  const fresh = new MigrationOptions();
  assert.throws(() => fresh.setCapabilities([{ capability: 'switchover-ack', state: true }]), {
    message: "Capability 'switchover-ack' requires capability 'return-path'",
  });
});

test('parameters: QEMU defaults and validation messages', () => {
  const o = new MigrationOptions();
  const p = o.queryParameters();
  assert.equal(p['downtime-limit'], 300);
  assert.equal(p['max-bandwidth'], 134217728);
  assert.equal(p['avail-switchover-bandwidth'], 0);
  assert.equal(p['multifd-channels'], 2);
  assert.equal(p['multifd-compression'], 'none');
  assert.equal(p['zero-page-detection'], 'multifd');
  assert.deepEqual(p, { ...DEFAULT_MIGRATION_PARAMETERS });

  const refused: [Record<string, unknown>, string][] = [
    [
      { 'downtime-limit': 2000001 },
      "Parameter 'downtime_limit' expects an integer in the range of 0 to 2000000 ms",
    ],
    [{ 'multifd-channels': 0 }, "Parameter 'multifd_channels' expects a value between 1 and 255"],
    [{ 'multifd-channels': 256 }, "Parameter 'multifd-channels' expects uint8"],
    [
      { 'cpu-throttle-initial': 0 },
      "Parameter 'cpu_throttle_initial' expects an integer in the range of 1 to 99",
    ],
    [
      { 'xbzrle-cache-size': 5000 },
      "Parameter 'xbzrle_cache_size' expects a power of two no less than the target page size",
    ],
    [
      { 'max-cpu-throttle': 10 },
      "Parameter 'max_cpu_throttle' expects an integer in the range of cpu_throttle_initial to 99",
    ],
    [{ 'announce-step': 0 }, "Parameter 'announce_step' expects a value between 0 and 10000"],
    [{ 'vcpu-dirty-limit': 0 }, "Parameter 'vcpu_dirty_limit' must be greater than 1 MB/s"],
    [{ 'max-bandwidth': -1 }, "Parameter 'max-bandwidth' expects size"],
    [{ 'max-bandwidth': 1.5 }, "Invalid parameter type for 'max-bandwidth', expected: integer"],
    [{ 'direct-io': 'yes' }, "Invalid parameter type for 'direct-io', expected: boolean"],
    [
      { 'multifd-compression': 'lz4' },
      "Parameter 'multifd-compression' does not accept value 'lz4'",
    ],
    [
      { 'multifd-compression': 'zlib' },
      "multifd-compression 'zlib' is not supported (only 'none')",
    ],
    [{ 'tls-creds': 5 }, "Invalid parameter type for 'tls-creds', expected: string"],
    [{ bogus: 1 }, "Parameter 'bogus' is unexpected"],
  ];
  for (const [changes, message] of refused) {
    assert.throws(() => o.setParameters(changes), { message }, JSON.stringify(changes));
  }
  assert.deepEqual(o.queryParameters(), { ...DEFAULT_MIGRATION_PARAMETERS }, 'all refused');

  o.setParameters({ 'downtime-limit': 2000000, 'max-bandwidth': 0, 'zero-page-detection': 'none' });
  assert.equal(o.parameters['downtime-limit'], 2000000);
  assert.equal(o.parameters['max-bandwidth'], 0);
});

test('migrate is refused while one runs, from inmigrate, with blockers, by save_prepare', async (t) => {
  const src = await createVmHalf({ role: 'source', ramMiB: 1 });
  t.after(() => src.destroy());
  const out = src.migration.outgoing;

  const unblock = src.blockers.add("VFIO device doesn't support migration");
  assert.throws(() => out.migrate('tcp:127.0.0.1:1'), {
    message: "VFIO device doesn't support migration",
  });
  assert.deepEqual(src.migration.query(), {
    'blocked-reasons': ["VFIO device doesn't support migration"],
  });
  unblock();

  const refuse = src.registry.register(
    'picky',
    {
      savePrepare: (ctx) => {
        if (!ctx.capability('postcopy-ram')) throw new Error('postcopy is off: fine');
      },
    },
    { versionId: 1 },
  );
  assert.throws(() => out.migrate('tcp:127.0.0.1:1'), {
    message: "save_prepare of 'picky' instance 0 (section 3) failed: postcopy is off: fine",
  });
  src.registry.unregister(refuse);
  assert.equal(out.status, 'none');
  src.migration.options.setCapabilities([{ capability: 'postcopy-ram', state: true }]);
  assert.throws(() => out.migrate('tcp:127.0.0.1:1'), {
    message: "Capability 'postcopy-ram' is set, but this migration cannot run it",
  });
  src.migration.options.setCapabilities([{ capability: 'postcopy-ram', state: false }]);

  assert.throws(() => out.migrate('udp:x'), /invalid migration URI 'udp:x': unknown transport/);

  const dst = await createVmHalf({ role: 'destination', ramMiB: 1 });
  t.after(() => dst.destroy());
  assert.throws(() => dst.migration.outgoing.migrate('tcp:127.0.0.1:1'), {
    message: 'Guest is waiting for an incoming migration',
  });
});

test('while one migration runs, another and capability changes are refused', async (t) => {
  // A channel that never connects keeps the migration in setup.
  const src = await createVmHalf({
    role: 'source',
    ramMiB: 1,
    outgoing: {
      connect: (_uri, signal) =>
        new Promise((_resolve, reject) => {
          signal.addEventListener('abort', () => reject(signal.reason as Error));
        }),
    },
  });
  t.after(() => src.destroy());
  const out = src.migration.outgoing;
  out.migrate('tcp:127.0.0.1:1');
  assert.equal(out.status, 'setup');
  assert.throws(() => out.migrate('tcp:127.0.0.1:1'), {
    message: "There's a migration process in progress",
  });
  assert.throws(
    () => src.migration.options.setCapabilities([{ capability: 'events', state: true }]),
    { message: "There's a migration process in progress" },
  );
  // Parameters may change at any time (a running migration takes them).
  src.migration.options.setParameters({ 'downtime-limit': 1000 });
  assert.deepEqual(src.migration.query(), { status: 'setup' });
  out.cancel();
  assert.equal(await out.whenFinished(), 'cancelled');
  assert.equal(src.runControl.runState, RunState.RUNNING);
  assert.deepEqual(src.notified, ['precopy-failed']);
});

test('a connection that fails: failed, with the reason', async (t) => {
  const src = await createVmHalf({ role: 'source', ramMiB: 1 });
  t.after(() => src.destroy());
  const probe = await createVmHalf({ role: 'destination', ramMiB: 1 });
  const uri = await listenLoopback(probe);
  await probe.destroy(); // nobody listens there any more
  src.migration.outgoing.migrate(uri);
  assert.equal(await src.migration.outgoing.whenFinished(), 'failed');
  assert.match(
    src.migration.query()['error-desc'] ?? '',
    /cannot connect to tcp:127\.0\.0\.1:\d+: .*ECONNREFUSED/,
  );
  assert.deepEqual(src.notified, ['precopy-failed']);
});

test('pause-before-switchover waits in pre-switchover for migrate-continue', async (t) => {
  const options = {
    capabilities: [
      { capability: 'events' as const, state: true },
      { capability: 'pause-before-switchover' as const, state: true },
    ],
  };
  const src = await createVmHalf({ role: 'source', ramMiB: 1, options });
  t.after(() => src.destroy());
  const dst = await createVmHalf({ role: 'destination', ramMiB: 1, populateSeed: false });
  t.after(() => dst.destroy());
  const out = src.migration.outgoing;
  assert.throws(() => out.continue('pre-switchover'), {
    message: 'Migration not in expected state: none',
  });
  out.migrate(await listenLoopback(dst));
  await waitUntil(() => out.status === 'pre-switchover', 10_000, 'pre-switchover');
  assert.equal(src.runControl.runState, RunState.FINISH_MIGRATE);
  const info = src.migration.query();
  assert.equal(info.status, 'pre-switchover');
  assert.equal(typeof info.ram?.transferred, 'number');
  assert.throws(() => out.continue('device'), {
    message: 'Migration not in expected state: pre-switchover',
  });
  out.continue('pre-switchover');
  assert.equal(await out.whenFinished(), 'completed');
  assert.deepEqual(
    src.events.flatMap((e) => (e.event === 'MIGRATION' ? [e.data.status] : [])),
    ['setup', 'active', 'pre-switchover', 'device', 'completed'],
  );
  assert.equal(await dst.migration.incoming.whenFinished(), 'completed');
});

test('cancel in pre-switchover restarts the guest', async (t) => {
  const src = await createVmHalf({
    role: 'source',
    ramMiB: 1,
    options: { capabilities: [{ capability: 'pause-before-switchover', state: true }] },
  });
  t.after(() => src.destroy());
  const dst = await createVmHalf({ role: 'destination', ramMiB: 1, populateSeed: false });
  t.after(() => dst.destroy());
  src.migration.outgoing.migrate(await listenLoopback(dst));
  await waitUntil(
    () => src.migration.outgoing.status === 'pre-switchover',
    10_000,
    'pre-switchover',
  );
  src.migration.outgoing.cancel();
  assert.equal(await src.migration.outgoing.whenFinished(), 'cancelled');
  assert.equal(src.runControl.runState, RunState.RUNNING);
});

test('migrate-incoming: inmigrate only, once; a machine-type mismatch fails the load', async (t) => {
  const running = await createVmHalf({ role: 'source', ramMiB: 1 });
  t.after(() => running.destroy());
  await assert.rejects(running.migration.incoming.start('tcp:127.0.0.1:0'), {
    message: "'-incoming' was not specified on the command line",
  });

  const src = await createVmHalf({ role: 'source', ramMiB: 1, machineType: 'pc', options: RP });
  t.after(() => src.destroy());
  const dst = await createVmHalf({ role: 'destination', ramMiB: 1, options: RP });
  t.after(() => dst.destroy());
  const uri = await listenLoopback(dst);
  await assert.rejects(dst.migration.incoming.start('tcp:127.0.0.1:0'), {
    message: 'The incoming migration has already been started',
  });
  const listening = dst.migration.query();
  assert.equal(listening.status, 'setup');
  assert.equal(listening['socket-address']?.[0]?.type, 'inet');

  src.migration.outgoing.migrate(uri);
  assert.equal(await dst.migration.incoming.whenFinished(), 'failed');
  assert.deepEqual(dst.migration.query(), {
    status: 'failed',
    'socket-address': listening['socket-address'],
    'error-desc':
      "configuration section at offset 8: Machine type received is 'pc' and local is 'none'",
  });
  assert.equal(dst.runControl.runState, RunState.INMIGRATE);
  // It failed before the return path was opened: the source sees the channel close.
  assert.equal(await src.migration.outgoing.whenFinished(), 'failed');
  assert.match(
    src.migration.query()['error-desc'] ?? '',
    /^return path: (unexpected end of stream|stream failed .*ECONNRESET)/,
  );
});

test('RAM sizes must match: a length mismatch fails both sides', async (t) => {
  const src = await createVmHalf({ role: 'source', ramMiB: 1, options: RP });
  t.after(() => src.destroy());
  const dst = await createVmHalf({ role: 'destination', ramMiB: 2, options: RP });
  t.after(() => dst.destroy());
  src.migration.outgoing.migrate(await listenLoopback(dst));
  assert.equal(await dst.migration.incoming.whenFinished(), 'failed');
  assert.match(
    dst.migration.incoming.error?.message ?? '',
    /^section 'ram' instance 0 \(section id 1\) at offset \d+: Length mismatch: ram: 0x100000 in != 0x200000: Invalid argument$/,
  );
  // The destination said so on the return path: SHUT with its error flag.
  assert.equal(await src.migration.outgoing.whenFinished(), 'failed');
  assert.equal(src.migration.query()['error-desc'], 'Sibling indicated error 1');
  assert.equal(src.runControl.runState, RunState.RUNNING);
});

test('exit-on-error: off by default (the process stays up), honoured when asked', async (t) => {
  for (const exitOnError of [undefined, true]) {
    const exits: number[] = [];
    const src = await createVmHalf({ role: 'source', ramMiB: 1, machineType: 'pc' });
    t.after(() => src.destroy());
    const dst = await createVmHalf({
      role: 'destination',
      ramMiB: 1,
      incoming: { exit: (code) => void exits.push(code) },
    });
    t.after(() => dst.destroy());
    await dst.migration.incoming.start('tcp:127.0.0.1:0', { exitOnError });
    const uri = dst.migration.incoming.uri;
    assert.equal(uri?.transport, 'tcp');
    src.migration.outgoing.migrate(uri);
    assert.equal(await dst.migration.incoming.whenFinished(), 'failed');
    assert.deepEqual(exits, exitOnError === true ? [1] : []);
  }
});
