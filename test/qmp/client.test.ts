/**
 * The QMP client against this project's server: results and errors, timeouts, events
 * (waitEvent and the iterator), OOB, and every way a connection can fail.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import { z } from 'zod';
import { QmpClient, QmpConnectionError, QmpTimeoutError } from '../../src/qmp/client.ts';
import { QmpError } from '../../src/qmp/errors.ts';
import { QmpServer } from '../../src/qmp/server.ts';
import type { QmpEvent } from '../../src/qmp/wire.ts';
import { sleep, tempDir } from './raw-client.ts';

async function setup(
  t: TestContext,
  kind: 'unix' | 'tcp' = 'unix',
): Promise<{ server: QmpServer; address: string }> {
  const server = new QmpServer({ version: { major: 9, minor: 2, micro: 1 }, package: 'pkg' });
  server.register('echo', {
    args: z.object({ value: z.unknown() }),
    handler: ({ value }) => ({ value }),
  });
  server.register('sleep', {
    args: z.object({ ms: z.number() }),
    handler: async ({ ms }, { signal }) => {
      await sleep(ms, signal);
      return { slept: ms };
    },
  });
  server.register('fail', {
    handler: () => {
      throw new QmpError('DeviceNotActive', 'No migration is in progress');
    },
  });
  server.register('ping-oob', { oob: true, handler: () => 'pong' });
  t.after(() => server.close());
  const address =
    kind === 'unix'
      ? await server.listen(`unix:${join(await tempDir(t), 's')}`)
      : await server.listen('tcp:127.0.0.1:0');
  return { server, address };
}

async function client(t: TestContext, address: string, options = {}): Promise<QmpClient> {
  const c = await QmpClient.connect(address, options);
  t.after(() => c.close());
  return c;
}

for (const kind of ['unix', 'tcp'] as const) {
  test(`${kind}: greeting, negotiation, results and typed errors`, async (t) => {
    const { address } = await setup(t, kind);
    const qmp = await client(t, address);
    assert.deepEqual(qmp.greeting, {
      QMP: {
        version: { qemu: { micro: 1, minor: 2, major: 9 }, package: 'pkg' },
        capabilities: ['oob'],
      },
    });
    const value = { nested: ['a', 1, null, { '}': '"{' }], unicode: 'é\u{1f600}' };
    assert.deepEqual(await qmp.execute('echo', { value }), { value });
    assert.deepEqual(await qmp.execute('query-version'), {
      qemu: { micro: 1, minor: 2, major: 9 },
      package: 'pkg',
    });
    await assert.rejects(qmp.execute('fail'), (err: unknown) => {
      assert.ok(err instanceof QmpError);
      assert.equal(err.errorClass, 'DeviceNotActive');
      assert.equal(err.desc, 'No migration is in progress');
      return true;
    });
    await assert.rejects(qmp.execute('echo', {}), {
      name: 'QmpError',
      errorClass: 'GenericError',
      desc: "Parameter 'value' is missing",
    });
  });
}

test('commands in flight at once resolve with their own replies', async (t) => {
  const { address } = await setup(t);
  const qmp = await client(t, address);
  const results = await Promise.all(
    [30, 0, 20, 5].map((ms, i) =>
      i % 2 === 0 ? qmp.execute('sleep', { ms }) : qmp.execute('echo', { value: i }),
    ),
  );
  assert.deepEqual(results, [{ slept: 30 }, { value: 1 }, { slept: 20 }, { value: 3 }]);
});

test('a timeout rejects that command only; its late reply is ignored', async (t) => {
  const { address } = await setup(t);
  const qmp = await client(t, address);
  await assert.rejects(qmp.execute('sleep', { ms: 200 }, { timeoutMs: 30 }), (err: unknown) => {
    assert.ok(err instanceof QmpTimeoutError);
    assert.match(err.message, /no reply to 'sleep' within 30 ms/);
    return true;
  });
  // The server answers in order, so this reply comes after the late one.
  assert.deepEqual(await qmp.execute('echo', { value: 'next' }), { value: 'next' });
});

test('waitEvent: by name and predicate, after the call; times out cleanly', async (t) => {
  const { server, address } = await setup(t);
  const qmp = await client(t, address);
  server.emit('MIGRATION', { status: 'setup' }); // before waiting: not seen
  await qmp.execute('echo', { value: 0 }); // the event has arrived by now
  const done = qmp.waitEvent('MIGRATION', (e) => e.data?.status === 'completed', 2000);
  server.emit('MIGRATION_PASS', { pass: 1 });
  server.emit('MIGRATION', { status: 'active' });
  server.emit('MIGRATION', { status: 'completed' });
  const ev = await done;
  assert.deepEqual(ev.data, { status: 'completed' });
  assert.ok(ev.timestamp.seconds > 0);
  await assert.rejects(qmp.waitEvent('NEVER', undefined, 30), QmpTimeoutError);
});

test('events(): every event in order; the iteration ends when the connection closes', async (t) => {
  const { server, address } = await setup(t);
  const qmp = await client(t, address);
  const seen: string[] = [];
  const reading = (async () => {
    for await (const ev of qmp.events()) seen.push(`${ev.event}:${String(ev.data?.n)}`);
  })();
  await qmp.execute('echo', { value: 0 }); // the iterator is subscribed before any event
  for (let n = 0; n < 50; n++) server.emit(n % 2 ? 'ODD' : 'EVEN', { n });
  await qmp.execute('echo', { value: 1 }); // all 50 events were delivered before this reply
  await server.close();
  await reading;
  assert.deepEqual(
    seen,
    Array.from({ length: 50 }, (_, n) => `${n % 2 ? 'ODD' : 'EVEN'}:${n}`),
  );
});

test('events(): a reader that falls behind fails instead of growing without bound', async (t) => {
  const { server, address } = await setup(t);
  const qmp = await client(t, address, { maxBufferedEvents: 10 });
  const it = qmp.events();
  for (let n = 0; n < 20; n++) server.emit('E', { n });
  await qmp.execute('echo', { value: 0 });
  for (let n = 0; n < 10; n++) {
    const next: IteratorResult<QmpEvent> = await it.next();
    assert.equal(next.done ? undefined : next.value.data?.n, n);
  }
  await assert.rejects(it.next(), /fell behind \(10 unread\)/);
});

test('exec-oob through the client once the "oob" capability is negotiated', async (t) => {
  const { address } = await setup(t);
  const qmp = await client(t, address, { capabilities: ['oob'] });
  const slow = qmp.execute('sleep', { ms: 200 });
  const order: string[] = [];
  await Promise.all([
    slow.then(() => order.push('slow')),
    qmp.execute('ping-oob', undefined, { oob: true }).then((v) => order.push(String(v))),
  ]);
  assert.deepEqual(order, ['pong', 'slow']);
});

test('connection loss rejects what is pending, and later calls, with QmpConnectionError', async (t) => {
  const { server, address } = await setup(t);
  const qmp = await client(t, address);
  const pending = assert.rejects(qmp.execute('sleep', { ms: 5000 }), (err: unknown) => {
    assert.ok(err instanceof QmpConnectionError);
    assert.match(err.message, /connection closed by the server \(while waiting for 'sleep'\)/);
    return true;
  });
  const waiting = assert.rejects(qmp.waitEvent('NEVER', undefined, 5000), QmpConnectionError);
  await sleep(20);
  await server.close();
  await pending;
  await waiting;
  assert.equal(qmp.closed, true);
  await assert.rejects(qmp.execute('echo', { value: 1 }), QmpConnectionError);
});

test('connect failures: no socket, no greeting in time, not a QMP server', async (t) => {
  const dir = await tempDir(t);
  await assert.rejects(QmpClient.connect(`unix:${join(dir, 'missing')}`), (err: unknown) => {
    assert.ok(err instanceof QmpConnectionError);
    assert.match(err.message, /cannot connect: connect ENOENT/);
    return true;
  });

  const listen = async (onConnect: (s: Socket) => void): Promise<Server> => {
    const srv = createServer(onConnect);
    await new Promise<void>((resolve) => srv.listen({ host: '127.0.0.1', port: 0 }, resolve));
    t.after(
      () =>
        new Promise<void>((resolve) => {
          srv.close(() => resolve());
        }),
    );
    return srv;
  };
  const sockets: Socket[] = [];
  t.after(() => sockets.forEach((s) => s.destroy()));
  const silent = await listen((s) => sockets.push(s));
  const silentPort = (silent.address() as { port: number }).port;
  await assert.rejects(
    QmpClient.connect(`tcp:127.0.0.1:${silentPort}`, { connectTimeoutMs: 100 }),
    (err: unknown) => {
      assert.ok(err instanceof QmpTimeoutError);
      assert.match(err.message, /no greeting and negotiation within 100 ms/);
      return true;
    },
  );
  const http = await listen((s) => {
    sockets.push(s);
    s.end('{"hello":"world"}\r\n');
  });
  const httpPort = (http.address() as { port: number }).port;
  await assert.rejects(QmpClient.connect(`tcp:127.0.0.1:${httpPort}`), /expected the QMP greeting/);
});

test('skipNegotiation leaves the session to the caller', async (t) => {
  const { address } = await setup(t);
  const qmp = await client(t, address, { skipNegotiation: true });
  await assert.rejects(qmp.execute('query-version'), {
    errorClass: 'CommandNotFound',
    desc: "Expecting capabilities negotiation with 'qmp_capabilities'",
  });
  assert.deepEqual(await qmp.execute('qmp_capabilities'), {});
  assert.equal(typeof (await qmp.execute<{ package: string }>('query-version')).package, 'string');
});
