import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import {
  MIG_RP_MSG_SHUT,
  messageU32,
  putRpShut,
  readReturnPathMessage,
} from '../../../src/migration/stream/index.ts';
import { connect, listen } from '../../../src/migration/transport/index.ts';
import type { MigrationConnection } from '../../../src/migration/transport/index.ts';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'vfio-mig-transport-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const PAGES = 512;

/** Source writes PAGES numbered pages; destination checks them and answers SHUT 0. */
async function exchange(src: MigrationConnection, dst: MigrationConnection): Promise<void> {
  const w = src.openWriter();
  const r = dst.openReader();
  const page = Buffer.alloc(4096);
  const receiving = (async () => {
    const got = Buffer.alloc(4096);
    for (let i = 0; i < PAGES; i++) {
      assert.equal(await r.getBe32('page number'), i);
      await r.readInto(got);
      assert.ok(got.every((b) => b === (i & 0xff)));
    }
    const rp = dst.openWriter();
    putRpShut(rp, false);
    await rp.flush();
  })();
  for (let i = 0; i < PAGES; i++) {
    w.putBe32(i);
    w.putBuffer(page.fill(i & 0xff));
    if (w.needsDrain) await w.ready();
  }
  await w.flush();
  await receiving;
  const m = await readReturnPathMessage(src.openReader());
  assert.deepEqual([m.type, messageU32(m)], [MIG_RP_MSG_SHUT, 0]);
}

async function socketRoundTrip(t: TestContext, uri: string): Promise<void> {
  const listener = await listen(uri);
  t.after(() => listener.close());
  const bound = listener.uri;
  if (bound.transport === 'tcp') assert.ok(bound.port > 0, 'port 0 reports the chosen port');
  const [src, dst] = await Promise.all([connect(bound), listener.accept()]);
  t.after(() => {
    src.destroy();
    dst.destroy();
  });
  assert.equal(src.returnPath, true);
  await exchange(src, dst);
  await Promise.all([src.close(1000), dst.close(1000)]);
}

test('tcp on 127.0.0.1 with port 0: stream one way, return path the other', (t) =>
  socketRoundTrip(t, 'tcp:127.0.0.1:0'));

test('tcp on [::1]', async (t) => {
  const probe = createServer();
  const ok = await new Promise<boolean>((resolve) => {
    probe.once('error', () => resolve(false));
    probe.listen(0, '::1', () => resolve(true));
  });
  probe.close();
  if (!ok) {
    t.skip('IPv6 loopback is not available');
    return;
  }
  await socketRoundTrip(t, 'tcp:[::1]:0');
});

test('unix socket in a temp dir; a stale socket file is replaced', async (t) => {
  const path = join(tempDir(t), 'mig.sock');
  const first = await listen(`unix:${path}`);
  // Leave the socket file behind, as a crashed process would.
  await first.close();
  const stale = createServer().listen(path);
  await new Promise((resolve) => stale.once('listening', resolve));
  stale.unref();
  assert.ok(statSync(path).isSocket());
  await socketRoundTrip(t, `unix:${path}`);
  stale.close();
});

test('a tcp listener binds exactly the address asked for', async (t) => {
  const listener = await listen('tcp:127.0.0.1:0');
  t.after(() => listener.close());
  const port = listener.uri.transport === 'tcp' ? listener.uri.port : 0;
  await assert.rejects(
    listen(`tcp:127.0.0.1:${port}`),
    /cannot listen on tcp:127.0.0.1:\d+: .*EADDRINUSE/,
  );
  await assert.rejects(
    connect(`tcp:127.0.0.2:${port}`),
    /cannot connect to tcp:127.0.0.2:\d+: .*ECONNREFUSED/,
  );
});

test('connect and accept fail clearly', async (t) => {
  await assert.rejects(connect('tcp:127.0.0.1:0'), /a host and a port are needed/);
  await assert.rejects(
    connect(`unix:${join(tempDir(t), 'none.sock')}`),
    /cannot connect to unix:.*ENOENT/,
  );
  const listener = await listen('tcp:127.0.0.1:0');
  t.after(() => listener.close());
  await assert.rejects(listener.accept(AbortSignal.timeout(20)), /TimeoutError|timed out|aborted/i);
  await listener.close();
  await assert.rejects(listener.accept(), /listener closed/);
});

test('file: the source writes a plain stream, the destination reads it back', async (t) => {
  const dir = tempDir(t);
  for (const uri of [`file:${join(dir, 'a.mig')}`, `file:${join(dir, 'b.mig')},offset=4096`]) {
    const out = await connect(uri);
    assert.equal(out.returnPath, false);
    assert.throws(() => out.openReader(), /cannot be read/);
    const w = out.openWriter();
    for (let i = 0; i < 1000; i++) w.putBe32(i);
    await w.close();
    await out.close();
    const listener = await listen(uri);
    const inc = await listener.accept();
    await assert.rejects(listener.accept(), /has a single channel/);
    const r = inc.openReader();
    for (let i = 0; i < 1000; i++) assert.equal(await r.getBe32(), i);
    assert.equal(await r.atEnd(), true);
    await inc.close();
  }
  const b = readFileSync(join(dir, 'b.mig'));
  assert.equal(b.length, 4096 + 4000);
  assert.ok(
    b.subarray(0, 4096).every((x) => x === 0),
    'a hole before the offset',
  );
  await assert.rejects(connect(`file:${join(dir, 'missing', 'x')}`), /cannot open .* for write/);
  await assert.rejects(
    (await listen(`file:${join(dir, 'missing.mig')}`)).accept(),
    /cannot open .* for read: ENOENT/,
  );
});
