/**
 * The fault channel between two real loopback sockets: a cut at byte N delivers exactly N
 * bytes and then an end, a reset gives the peer ECONNRESET, a stall holds bytes and write
 * acknowledgements until released, conditions fire before the next chunk; the stall watchdog
 * notices a writer that cannot drain.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, connect } from 'node:net';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import fc from 'fast-check';
import { FaultChannel } from '../../src/migration/transport/fault-channel.ts';
import { StallWatchdog, drainProgress } from '../../src/migration/stall-watchdog.ts';

/** A connected pair of sockets on loopback: [ours, the peer's]. */
async function socketPair(): Promise<[Socket, Socket]> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const ours = connect(addr.port, '127.0.0.1');
  await once(ours, 'connect');
  const [peer] = await accepted;
  server.close();
  return [ours, peer];
}

/** Everything the peer reads until its end or error: the bytes and how it ended. */
async function drain(peer: Socket): Promise<{ bytes: Buffer; end: string }> {
  const parts: Buffer[] = [];
  let end = 'end';
  try {
    for await (const chunk of peer) parts.push(chunk as Buffer);
  } catch (err) {
    end = (err as NodeJS.ErrnoException).code ?? String(err);
  }
  return { bytes: Buffer.concat(parts), end };
}

function pattern(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + (i >> 8)) & 0xff;
  return b;
}

/** Writes `data` in chunks of the given sizes; resolves with the first error or null. */
async function writeChunks(ch: FaultChannel, data: Buffer, sizes: number[]): Promise<Error | null> {
  let at = 0;
  let i = 0;
  try {
    while (at < data.length) {
      const n = Math.min(sizes[i++ % sizes.length]!, data.length - at);
      await new Promise<void>((resolve, reject) =>
        ch.write(data.subarray(at, at + n), (err) => (err ? reject(err) : resolve())),
      );
      at += n;
    }
  } catch (err) {
    return err as Error;
  }
  return null;
}

test('a cut at byte N: the peer reads exactly N bytes then an end; local writes fail naming the fault', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 0, max: 20_000 }),
      fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 5 }),
      async (n, sizes) => {
        const [ours, peer] = await socketPair();
        const ch = new FaultChannel(ours, 'test');
        ch.addTripwire({ direction: 'out', atByte: n, fire: (c) => c.cut() });
        const data = pattern(24_000);
        const [err, got] = await Promise.all([writeChunks(ch, data, sizes), drain(peer)]);
        assert.equal(got.end, 'end');
        assert.equal(got.bytes.length, n);
        assert.ok(got.bytes.equals(data.subarray(0, n)));
        assert.match(String(err), /test: cut by fault injection \(after \d+ bytes out/);
        assert.equal(ch.bytesOut, n);
      },
    ),
    { numRuns: 25 },
  );
});

test('a reset: the peer reads ECONNRESET', async () => {
  const [ours, peer] = await socketPair();
  const ch = new FaultChannel(ours, 'test');
  const got = drain(peer);
  await writeChunks(ch, pattern(1000), [700]);
  await new Promise((r) => setTimeout(r, 20));
  ch.reset();
  assert.equal((await got).end, 'ECONNRESET');
  assert.match(ch.fault?.message ?? '', /test: reset by fault injection \(after 1000 bytes out/);
  assert.notEqual(await writeChunks(ch, pattern(10), [10]), null, 'writes fail');
});

test('incoming bytes: a cut at byte N lets at most N bytes through, then the read aborts', async () => {
  const [ours, peer] = await socketPair();
  const ch = new FaultChannel(ours, 'test');
  ch.addTripwire({ direction: 'in', atByte: 3000, fire: (c) => c.cut() });
  peer.write(pattern(10_000));
  peer.on('error', () => undefined);
  const parts: Buffer[] = [];
  await assert.rejects(
    (async () => {
      for await (const chunk of ch) parts.push(chunk as Buffer);
    })(),
    (err: NodeJS.ErrnoException) => {
      assert.equal(err.code, 'ECONNABORTED');
      assert.match(err.message, /cut by fault injection \(after 0 bytes out, 3000 bytes in\)/);
      return true;
    },
  );
  const got = Buffer.concat(parts);
  assert.ok(got.length <= 3000 && got.equals(pattern(10_000).subarray(0, got.length)));
  assert.equal(ch.bytesIn, 3000);
});

test('a stall holds the bytes and the acknowledgement; the stall watchdog notices; unstall delivers in order', async () => {
  const [ours, peer] = await socketPair();
  const ch = new FaultChannel(ours, 'test');
  ch.addTripwire({ direction: 'out', atByte: 500, fire: (c) => c.stall('out') });
  const got: Buffer[] = [];
  peer.on('data', (b: Buffer) => got.push(b));
  const stalled = new Promise<Error>((resolve) => {
    const dog = new StallWatchdog(60, resolve);
    dog.watch('the peer takes no data', drainProgress(ch));
  });
  const data = pattern(2000);
  const written = writeChunks(ch, data, [400]);
  const err = await stalled;
  assert.match(err.message, /^the peer takes no data for 60 ms \(x-stall-timeout\)$/);
  assert.equal(Buffer.concat(got).length, 500);
  ch.unstall('out');
  assert.equal(await written, null);
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(Buffer.concat(got).equals(data));
  ch.destroy();
  peer.destroy();
});

test('a condition fires before the next chunk once it holds, and on a poll without traffic', async () => {
  const [ours, peer] = await socketPair();
  const ch = new FaultChannel(ours, 'test');
  let phase = 'a';
  const fired: string[] = [];
  ch.addTripwire({ ready: () => phase === 'b', fire: () => fired.push(`b at ${ch.bytesOut}`) });
  ch.addTripwire({ ready: () => phase === 'c', fire: (c) => c.cut() });
  const got = drain(peer);
  await writeChunks(ch, pattern(100), [100]);
  phase = 'b';
  await writeChunks(ch, pattern(100), [100]);
  assert.deepEqual(fired, ['b at 100']);
  phase = 'c';
  const end = await got;
  assert.equal(end.bytes.length, 200, 'the poll cut the idle channel');
});

test('a delay slows each chunk without changing the bytes', async () => {
  const [ours, peer] = await socketPair();
  const ch = new FaultChannel(ours, 'test');
  ch.delay('out', 20);
  const got = drain(peer);
  const start = performance.now();
  await writeChunks(ch, pattern(3000), [1000]);
  assert.ok(performance.now() - start >= 55, 'three chunks, 20 ms each');
  ch.end();
  const end = await got;
  assert.ok(end.bytes.equals(pattern(3000)));
});
