/**
 * Interop with a third-party client, node-qemu's QMPClient (toolchain.md §5): it splits
 * input on newlines, negotiates without an id and expects QEMU's reply and event shapes.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import { QMPClient, QmpCommandError } from 'node-qemu';
import type { RawQmpEvent } from 'node-qemu';
import { z } from 'zod';
import { QmpServer } from '../../src/qmp/server.ts';
import { tempDir } from './raw-client.ts';

const STATUS = { status: 'running', singlestep: false, running: true } as const;
const MIGRATE_INFO = {
  status: 'completed',
  'total-time': 1234,
  downtime: 42,
  'setup-time': 3,
  ram: { transferred: 123456789, remaining: 0, total: 1073741824, mbps: 950.5 },
  vfio: { transferred: 4096 },
};

function vmLikeServer(t: TestContext): QmpServer {
  const server = new QmpServer();
  server.register('query-status', { handler: () => STATUS });
  server.register('query-migrate', { handler: () => MIGRATE_INFO });
  server.register('migrate', { args: z.object({ uri: z.string() }), handler: () => undefined });
  t.after(() => server.close());
  return server;
}

async function nodeQemu(t: TestContext, opts: ConstructorParameters<typeof QMPClient>[0]) {
  const client = new QMPClient(opts);
  client.on('error', () => undefined);
  await client.connect();
  t.after(() => client.close());
  return client;
}

test('node-qemu over a UNIX socket: typed queries, commands, events, typed errors', async (t) => {
  const server = vmLikeServer(t);
  const dir = await tempDir(t);
  await server.listen(`unix:${join(dir, 'vm.qmp')}`);
  const client = await nodeQemu(t, { socketPath: join(dir, 'vm.qmp') });

  assert.deepEqual(await client.queryStatus(), STATUS);
  assert.deepEqual(await client.queryMigrate(), MIGRATE_INFO);
  assert.deepEqual(await client.execute('migrate', { uri: 'tcp:127.0.0.1:4444' }), {});
  const version = await client.execute<{ qemu: { major: number } }>('query-version');
  assert.equal(version.qemu.major, 10);

  const stop = new Promise<RawQmpEvent>((resolve) => client.once('rawEvent', resolve));
  server.emit('STOP');
  const ev = await stop;
  assert.equal(ev.event, 'STOP');
  assert.ok(ev.timestamp.seconds > 0);

  await assert.rejects(client.execute('bogus'), (err: unknown) => {
    assert.ok(err instanceof QmpCommandError);
    assert.equal(err.qmpClass, 'CommandNotFound');
    assert.equal(err.description, 'The command bogus has not been found');
    return true;
  });
  await assert.rejects(client.execute('migrate', {}), (err: unknown) => {
    assert.ok(err instanceof QmpCommandError);
    assert.equal(err.qmpClass, 'GenericError');
    assert.equal(err.description, "Parameter 'uri' is missing");
    return true;
  });
});

test('node-qemu over TCP, with OOB negotiated', async (t) => {
  const server = vmLikeServer(t);
  const address = await server.listen('tcp:127.0.0.1:0');
  const port = Number(address.slice(address.lastIndexOf(':') + 1));
  const client = await nodeQemu(t, { host: '127.0.0.1', port, oob: true });
  assert.equal((await client.queryStatus()).status, 'running');
  // node-qemu marks OOB with the pre-3.0 "control" member, which QEMU refuses the same way.
  await assert.rejects(client.executeOob('query-status'), (err: unknown) => {
    assert.ok(err instanceof QmpCommandError);
    assert.equal(err.description, "QMP input member 'control' is unexpected");
    return true;
  });
});
