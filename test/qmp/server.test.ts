/**
 * The QMP server over real sockets (a UNIX socket in a temp dir, TCP on loopback): greeting,
 * negotiation, order, ids, errors, events, several clients, limits, and clients that misbehave.
 */
import assert from 'node:assert/strict';
import { link, lstat, readdir, stat, writeFile, readFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import { z } from 'zod';
import { QmpServer } from '../../src/qmp/server.ts';
import type { QmpServerOptions } from '../../src/qmp/server.ts';
import type { QmpConnectionInfo } from '../../src/qmp/registry.ts';
import { RawQmp, sleep, tempDir } from './raw-client.ts';

const STATUS = { status: 'running', singlestep: false, running: true };

/** A server with a few stub commands, closed after the test. */
function stubServer(t: TestContext, options: QmpServerOptions = {}): QmpServer {
  const server = new QmpServer(options);
  server.register('query-status', { handler: () => STATUS });
  server.register('sleep', {
    args: z.object({ ms: z.number().int().min(0), tag: z.unknown().optional() }),
    async handler({ ms, tag }, { signal }) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        signal.addEventListener('abort', () => {
          clearTimeout(timer);
          resolve();
        });
      });
      return { tag };
    },
  });
  server.register('ping-oob', { oob: true, handler: () => ({ pong: true }) });
  t.after(() => server.close());
  return server;
}

async function unixServer(
  t: TestContext,
  options: QmpServerOptions = {},
): Promise<{ server: QmpServer; address: string; path: string; dir: string }> {
  const dir = await tempDir(t);
  const path = join(dir, 'vm.qmp');
  const server = stubServer(t, options);
  const address = await server.listen(`unix:${path}`);
  return { server, address, path, dir };
}

test('UNIX socket: greeting in its own write with CRLF, mode 0600, removed on close', async (t) => {
  const { server, address, path, dir } = await unixServer(t, {
    version: { major: 7, minor: 2, micro: 22 },
    package: 'vfio-migration test',
  });
  assert.equal(address, `unix:${path}`);
  const st = await lstat(path);
  assert.ok(st.isSocket());
  assert.equal(st.mode & 0o777, 0o600);
  assert.deepEqual(await readdir(dir), ['vm.qmp'], 'no staging directory left behind');

  const raw = await RawQmp.connect(address, t);
  const first = await raw.firstChunk;
  assert.equal(
    first.toString(),
    '{"QMP":{"version":{"qemu":{"micro":22,"minor":2,"major":7},"package":"vfio-migration test"},' +
      '"capabilities":["oob"]}}\r\n',
  );
  await server.close();
  await raw.closed;
  await assert.rejects(lstat(path), { code: 'ENOENT' });
});

test('the QEMU 7.2 transcript: concatenated input, command before negotiation, event, error', async (t) => {
  // toolchain.md §5: the same input QEMU 7.2 answered in the golden transcript.
  const { server, address } = await unixServer(t, {
    clock: () => 1795702138_851390,
  });
  const raw = await RawQmp.connect(address, t);
  await raw.next(); // greeting
  raw.send(
    '{"execute":"query-status","id":1}' +
      '{"execute":"qmp_capabilities","id":"a"}' +
      '{"execute":"query-status","id":2}',
  );
  assert.deepEqual(await raw.take(3), [
    {
      id: 1,
      error: {
        class: 'CommandNotFound',
        desc: "Expecting capabilities negotiation with 'qmp_capabilities'",
      },
    },
    { return: {}, id: 'a' },
    { return: STATUS, id: 2 },
  ]);
  server.emit('STOP');
  assert.deepEqual(await raw.next(), {
    timestamp: { seconds: 1795702138, microseconds: 851390 },
    event: 'STOP',
  });
  raw.send('{"execute":"bogus"}');
  assert.deepEqual(await raw.next(), {
    error: { class: 'CommandNotFound', desc: 'The command bogus has not been found' },
  });
  assert.match(
    raw.text,
    /\r\n\{"timestamp":\{"seconds":1795702138,"microseconds":851390\},"event":"STOP"\}\r\n/,
  );
});

test('TCP on loopback: binds exactly the given host, reports the real port', async (t) => {
  const server = stubServer(t);
  const address = await server.listen('tcp:127.0.0.1:0');
  const match = /^tcp:127\.0\.0\.1:(\d+)$/.exec(address);
  assert.ok(match, address);
  const port = Number(match[1]);
  assert.ok(port > 0);
  const raw = await RawQmp.connect(address, t);
  await raw.negotiate();
  raw.send('{"execute":"query-status","id":"tcp"}');
  assert.deepEqual(await raw.next(), { return: STATUS, id: 'tcp' });
  // Another loopback address reaches no listener: the bind is to 127.0.0.1 only.
  await assert.rejects(
    new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.2', port });
      s.once('connect', () => {
        s.destroy();
        resolve(undefined);
      });
      s.once('error', reject);
    }),
    { code: 'ECONNREFUSED' },
  );
});

test('ids of any JSON type are echoed on replies and errors (TCP)', async (t) => {
  const server = stubServer(t);
  const raw = await RawQmp.connect(await server.listen('tcp:127.0.0.1:0'), t);
  await raw.negotiate();
  const ids = [
    7,
    -0.5,
    'str',
    '',
    null,
    true,
    [1, 'two', [3]],
    { a: { b: ['{', '"'] } },
    'é\u{1f600}',
  ];
  for (const id of ids) {
    raw.send(JSON.stringify({ execute: 'query-status', id }));
    raw.send(JSON.stringify({ execute: 'query-status', arguments: { bogus: 1 }, id }));
    raw.send(JSON.stringify({ execute: 'no-such-command', id }));
  }
  for (const id of ids) {
    assert.deepEqual(await raw.take(3), [
      { return: STATUS, id },
      { id, error: { class: 'GenericError', desc: "Parameter 'bogus' is unexpected" } },
      {
        id,
        error: { class: 'CommandNotFound', desc: 'The command no-such-command has not been found' },
      },
    ]);
  }
});

test('replies stay in order with slow async handlers, and in-band commands run one at a time', async (t) => {
  const server = new QmpServer();
  t.after(() => server.close());
  let active = 0;
  let maxActive = 0;
  server.register('work', {
    args: z.object({ ms: z.number() }),
    async handler({ ms }) {
      active++;
      maxActive = Math.max(maxActive, active);
      await sleep(ms);
      active--;
      return { ms };
    },
  });
  const dir = await tempDir(t);
  const raw = await RawQmp.connect(await server.listen(`unix:${join(dir, 's')}`), t);
  await raw.negotiate();
  // Later commands would finish first if they ran concurrently.
  const delays = [60, 5, 40, 0, 25, 1, 15, 0, 30, 2, 10, 0];
  let input = '';
  delays.forEach((ms, i) => {
    input += JSON.stringify({ execute: 'work', arguments: { ms }, id: i });
    if (i % 3 === 0) input += '{"execute":"nope","id":"e' + i + '"} {bad} ';
  });
  raw.send(input);
  const replies = await raw.take(delays.length + 2 * Math.ceil(delays.length / 3));
  const expected: unknown[] = [];
  delays.forEach((ms, i) => {
    expected.push({ return: { ms }, id: i });
    if (i % 3 === 0) {
      expected.push({
        id: `e${i}`,
        error: { class: 'CommandNotFound', desc: 'The command nope has not been found' },
      });
      expected.push({
        error: { class: 'GenericError', desc: "JSON parse error, invalid keyword 'bad'" },
      });
    }
  });
  assert.deepEqual(replies, expected);
  assert.equal(maxActive, 1);
});

test('exec-oob overtakes a slow in-band command once OOB is enabled', async (t) => {
  const { address } = await unixServer(t);
  const raw = await RawQmp.connect(address, t);
  await raw.negotiate(['oob']);
  raw.send('{"execute":"sleep","arguments":{"ms":300},"id":"slow"}');
  raw.send('{"exec-oob":"ping-oob","id":"oob"}');
  assert.deepEqual(await raw.take(2), [
    { return: { pong: true }, id: 'oob' },
    { return: {}, id: 'slow' },
  ]);
});

test('several clients: independent queues, events only to negotiated clients', async (t) => {
  const { server, address } = await unixServer(t);
  const clients = await Promise.all([1, 2, 3, 4].map(() => RawQmp.connect(address, t)));
  const [a, b, c, d] = clients as [RawQmp, RawQmp, RawQmp, RawQmp];
  await Promise.all([a.negotiate(), b.negotiate(), c.negotiate()]);
  await d.next(); // greeting only: d never negotiates
  assert.equal(server.clientCount, 4);

  // A slow command on a does not hold up b.
  a.send('{"execute":"sleep","arguments":{"ms":400},"id":"a"}');
  const started = Date.now();
  b.send('{"execute":"query-status","id":"b"}');
  assert.deepEqual(await b.next(), { return: STATUS, id: 'b' });
  assert.ok(Date.now() - started < 300, 'b was answered while a still waited');

  server.emit('MIGRATION', { status: 'active' });
  for (const client of [b, c]) {
    const ev = await client.next();
    assert.equal(ev.event, 'MIGRATION');
    assert.deepEqual(ev.data, { status: 'active' });
    const ts = ev.timestamp as { seconds: number; microseconds: number };
    assert.ok(Number.isInteger(ts.seconds) && Math.abs(ts.seconds - Date.now() / 1000) < 60);
    assert.ok(Number.isInteger(ts.microseconds) && ts.microseconds >= 0 && ts.microseconds < 1e6);
  }
  // a gets the event before its slow reply, d gets nothing.
  assert.equal((await a.next()).event, 'MIGRATION');
  assert.deepEqual(await a.next(), { return: {}, id: 'a' });
  d.send('{"execute":"query-status","id":"d"}');
  assert.equal((await d.next()).id, 'd', 'no event was queued for d before its reply');
});

test('oversize input: an error reply, the rest skipped, the connection kept', async (t) => {
  const { address } = await unixServer(t, { maxMessageBytes: 1024 });
  const raw = await RawQmp.connect(address, t);
  await raw.negotiate();
  const huge = JSON.stringify({ execute: 'query-status', arguments: { pad: 'x'.repeat(5000) } });
  for (let i = 0; i < huge.length; i += 700) raw.send(huge.slice(i, i + 700));
  raw.send('{"execute":"query-status","id":"after"}');
  assert.deepEqual(await raw.take(2), [
    { error: { class: 'GenericError', desc: 'JSON token size limit exceeded' } },
    { return: STATUS, id: 'after' },
  ]);
});

test('a client pipelining faster than commands complete is slowed down, not buffered', async (t) => {
  const server = new QmpServer();
  t.after(() => server.close());
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  server.register('gate', { handler: () => gate });
  server.register('n', { args: z.object({ i: z.number() }), handler: ({ i }) => i });
  const raw = await RawQmp.connect(await server.listen(`unix:${join(await tempDir(t), 's')}`), t);
  await raw.negotiate();
  raw.send('{"execute":"gate","id":"g"}');
  const count = 20_000;
  let input = '';
  for (let i = 0; i < count; i++) input += `{"execute":"n","arguments":{"i":${i}}}`;
  raw.send(input); // ~700 KB: more than the kernel holds for an unread UNIX socket
  await sleep(200);
  assert.ok(
    raw.socket.writableLength > 0,
    'the server stopped reading while its queue was full, so our side still holds data',
  );
  release();
  assert.deepEqual(await raw.next(), { return: {}, id: 'g' });
  for (let i = 0; i < count; i++) assert.deepEqual(await raw.next(), { return: i });
});

test('a client that never reads is dropped; the VM and other clients carry on', async (t) => {
  const drops: [QmpConnectionInfo, string][] = [];
  let dropped!: () => void;
  const firstDrop = new Promise<void>((resolve) => (dropped = resolve));
  const { server, address } = await unixServer(t, {
    maxOutputBytes: 64 << 10,
    onDisconnect: (client, reason) => {
      drops.push([client, reason]);
      dropped();
    },
  });
  const stuck = await RawQmp.connect(address, t);
  await stuck.negotiate();
  stuck.socket.pause(); // stops reading; the kernel buffer fills, then the server's queue
  const good = await RawQmp.connect(address, t);
  await good.negotiate();

  const payload = { blob: 'z'.repeat(1024) };
  const events = 4000;
  let slowestEmitMs = 0;
  const received = (async () => {
    for (let i = 0; i < events; i++) assert.equal((await good.next()).event, 'BULK');
  })();
  for (let i = 0; i < events; i++) {
    const t0 = performance.now();
    server.emit('BULK', payload);
    slowestEmitMs = Math.max(slowestEmitMs, performance.now() - t0);
    if (i % 16 === 15) await new Promise((r) => setImmediate(r));
  }
  await received;
  await firstDrop;
  stuck.socket.resume(); // reading again, it sees the connection was closed
  await stuck.closed;
  assert.equal(drops.length, 1);
  assert.match(drops[0]![1], /^output queue over 65536 bytes: client not reading$/);
  assert.ok(slowestEmitMs < 50, `emit() never blocks (slowest ${slowestEmitMs.toFixed(1)} ms)`);
  assert.equal(server.clientCount, 1);
  good.send('{"execute":"query-status","id":1}');
  assert.deepEqual(await good.next(), { return: STATUS, id: 1 });
});

test('a client that half-closes still gets every reply, like `socat` with a here-string', async (t) => {
  const { address } = await unixServer(t);
  const raw = await RawQmp.connect(address, t);
  raw.socket.end(
    '{"execute":"qmp_capabilities"}{"execute":"sleep","arguments":{"ms":50,"tag":"t"},"id":1}' +
      '{"execute":"query-status","id":2}',
  );
  const msgs = await raw.take(4);
  assert.ok('QMP' in msgs[0]!);
  assert.deepEqual(msgs.slice(1), [
    { return: {} },
    { return: { tag: 't' }, id: 1 },
    { return: STATUS, id: 2 },
  ]);
  await raw.closed;
});

test('quit: the reply reaches the client before the hook runs', async (t) => {
  const dir = await tempDir(t);
  let quitCalls = 0;
  // The hook tears everything down: had it run first, the reply would be lost.
  const server: QmpServer = new QmpServer({
    onQuit: async () => {
      quitCalls++;
      await server.close();
    },
  });
  t.after(() => server.close());
  const raw = await RawQmp.connect(await server.listen(`unix:${join(dir, 'q')}`), t);
  await raw.negotiate();
  raw.send('{"execute":"quit","id":"bye"}');
  assert.deepEqual(await raw.next(), { return: {}, id: 'bye' });
  await raw.closed;
  assert.equal(quitCalls, 1);
});

test('default quit closes the server', async (t) => {
  const { server, address, path } = await unixServer(t);
  const raw = await RawQmp.connect(address, t);
  await raw.negotiate();
  raw.send('{"execute":"quit"}');
  assert.deepEqual(await raw.next(), { return: {} });
  await raw.closed;
  await server.close();
  await assert.rejects(lstat(path), { code: 'ENOENT' });
});

test('a client vanishing mid-command aborts its handler; the server keeps serving', async (t) => {
  const server = new QmpServer();
  t.after(() => server.close());
  let aborted: (() => void) | undefined;
  const abortSeen = new Promise<void>((resolve) => (aborted = resolve));
  server.register('wait-forever', {
    handler: (_args, { signal }) =>
      new Promise((_, reject) => {
        signal.addEventListener('abort', () => {
          aborted?.();
          reject(new Error('gone'));
        });
      }),
  });
  server.register('query-status', { handler: () => STATUS });
  const dir = await tempDir(t);
  const address = await server.listen(`unix:${join(dir, 's')}`);
  const first = await RawQmp.connect(address, t);
  await first.negotiate();
  first.send('{"execute":"wait-forever"}');
  await sleep(20);
  first.socket.destroy();
  await abortSeen;
  const second = await RawQmp.connect(address, t);
  await second.negotiate();
  second.send('{"execute":"query-status","id":1}');
  assert.deepEqual(await second.next(), { return: STATUS, id: 1 });
});

test('socket path safety: refuse a non-socket, refuse a live socket, replace a stale one', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'not-a-socket');
  await writeFile(file, 'precious');
  const s1 = new QmpServer();
  t.after(() => s1.close());
  await assert.rejects(
    s1.listen(`unix:${file}`),
    /refusing to replace .*not-a-socket: it exists and is not a socket/,
  );
  assert.equal(await readFile(file, 'utf8'), 'precious');

  const live = join(dir, 'live');
  const owner = new QmpServer();
  t.after(() => owner.close());
  await owner.listen(`unix:${live}`);
  const s2 = new QmpServer();
  t.after(() => s2.close());
  await assert.rejects(s2.listen(`unix:${live}`), /another server is already listening/);
  // The refused server did not disturb the live one.
  const raw = await RawQmp.connect(`unix:${live}`, t);
  await raw.negotiate();

  // A stale socket: a second name for a socket whose server has gone.
  const stale = join(dir, 'stale');
  const plain = createServer();
  const staging = join(dir, 'tmp.sock');
  await new Promise<void>((resolve) => plain.listen(staging, resolve));
  await link(staging, stale);
  await new Promise<void>((resolve) => plain.close(() => resolve()));
  assert.ok((await lstat(stale)).isSocket());
  const s3 = new QmpServer();
  t.after(() => s3.close());
  await s3.listen(`unix:${stale}`);
  assert.equal((await stat(stale)).mode & 0o777, 0o600);
  const again = await RawQmp.connect(`unix:${stale}`, t);
  await again.negotiate();
});

test('bad addresses are refused with what is wrong', async () => {
  const server = new QmpServer();
  await assert.rejects(server.listen('tcp:127.0.0.1'), /expected tcp:HOST:PORT/);
  await assert.rejects(server.listen('tcp:127.0.0.1:70000'), /port must be 0\.\.65535/);
  await assert.rejects(server.listen('tcp:::1:4444'), /IPv6 host needs brackets/);
  await assert.rejects(server.listen('udp:1.2.3.4:5'), /expected unix:PATH or tcp:HOST:PORT/);
  await assert.rejects(server.listen(`unix:/${'x'.repeat(120)}`), /longer than 107 bytes/);
  await server.close();
  await assert.rejects(server.listen('tcp:127.0.0.1:0'), /after close/);
  assert.throws(() => new QmpServer({ maxOutputBytes: 0 }), /maxOutputBytes must be >= 1/);
});
