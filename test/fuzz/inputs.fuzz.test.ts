/**
 * Fuzzing of everything else a peer or a user can send (issue: malformed input): QMP commands
 * with arbitrary arguments against a live VM, VM configuration files, and the destination's
 * return-path messages. Each input ends in a clean, specific error or a valid answer; nothing
 * throws anything else and the process stays usable.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { SourceReturnPath } from '../../src/migration/index.ts';
import { QEMUFileReader, StreamError } from '../../src/migration/stream/index.ts';
import { QmpClient, QmpError, QmpServer } from '../../src/qmp/index.ts';
import { registerVmCommands } from '../../src/qmp/commands/vm-commands.ts';
import { Vm, VmConfigError, parseVmConfig } from '../../src/vm/index.ts';
import { FUZZ_VM } from './stream-target.ts';

/** Commands that would leave the process, or open channels and files where the fuzzer says. */
const UNSAFE = new Set(['quit', 'migrate', 'migrate-incoming']);

test('QMP: random commands with random arguments get a return or a QMP error; the VM stays up', async (t) => {
  const vm = await Vm.create(FUZZ_VM, { deviceTickMs: 0 });
  const qmp = new QmpServer({ onQuit: () => undefined });
  registerVmCommands(qmp, vm);
  const address = await qmp.listen('tcp:127.0.0.1:0');
  const client = await QmpClient.connect(address, { timeoutMs: 5000 });
  t.after(async () => {
    await client.close();
    await qmp.close();
    await vm.destroy();
  });
  const names = qmp.commands().filter((n) => !UNSAFE.has(n));
  const argValue = fc.oneof(
    fc.jsonValue({ maxDepth: 3 }),
    fc.constantFrom(-1, 2 ** 64, 1e308, Number.MAX_SAFE_INTEGER, '', 'x'.repeat(5000)),
  );
  const knownKeys = fc.constantFrom(
    'uri',
    'capabilities',
    'capability',
    'state',
    'downtime-limit',
    'max-bandwidth',
    'multifd-channels',
    'avail-switchover-bandwidth',
    'tls-creds',
    'exit-on-error',
    'id',
  );
  let errors = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(...names),
      fc.dictionary(fc.oneof(knownKeys, fc.string({ maxLength: 12 })), argValue, { maxKeys: 4 }),
      async (name, args) => {
        try {
          await client.execute(name, args);
        } catch (err) {
          assert.ok(err instanceof QmpError, `${name}: ${String(err)}`);
          assert.ok(err.desc.length > 0);
          errors++;
        }
      },
    ),
    { numRuns: 600, seed: 7 },
  );
  assert.ok(errors > 100, 'most random arguments are refused');
  // Still alive and sane: well-formed commands work (a random `stop` may have paused it).
  await client.execute('cont');
  assert.deepEqual(await client.execute('query-status'), { running: true, status: 'running' });
});

test('VM configuration: arbitrary JSON is a VmConfigError or a valid config, nothing else', () => {
  const valid = { memory: '64M', devices: [{ id: 'nic0', model: 'sim:nic' }] };
  fc.assert(
    fc.property(
      fc.oneof(
        fc.jsonValue({ maxDepth: 4 }),
        fc.record({
          memory: fc.oneof(fc.string(), fc.integer(), fc.constant('64M')),
          vcpus: fc.oneof(fc.integer({ min: -5, max: 100 }), fc.string()),
          devices: fc.array(
            fc.record({ id: fc.string({ maxLength: 8 }), model: fc.string({ maxLength: 30 }) }),
            { maxLength: 3 },
          ),
        }),
        fc.jsonValue({ maxDepth: 2 }).map((v) => ({ ...valid, workload: v })),
      ),
      (value) => {
        try {
          parseVmConfig(value);
        } catch (err) {
          assert.ok(err instanceof VmConfigError, String(err));
          assert.match(err.message, /is not a valid VM configuration:\n {2}\S/);
        }
      },
    ),
    { numRuns: 2000, seed: 11 },
  );
});

test('return path: arbitrary bytes from the destination end in a StreamError, never a crash', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.uint8Array({ maxLength: 64 }),
        // well-formed headers with arbitrary types and lengths
        fc
          .tuple(
            fc.integer({ min: 0, max: 65535 }),
            fc.integer({ min: 0, max: 65535 }),
            fc.uint8Array({ maxLength: 16 }),
          )
          .map(([type, len, data]) =>
            Uint8Array.from([type >> 8, type & 255, len >> 8, len & 255, ...data]),
          ),
      ),
      async (bytes) => {
        const reader = new QEMUFileReader();
        reader.push(bytes);
        reader.end();
        const rp = new SourceReturnPath(reader);
        try {
          await rp.done;
        } catch (err) {
          assert.ok(err instanceof Error);
          assert.ok(
            err instanceof StreamError || /return path|SHUT|Sibling/i.test(err.message),
            err.message,
          );
        }
      },
    ),
    { numRuns: 1000, seed: 13 },
  );
});
