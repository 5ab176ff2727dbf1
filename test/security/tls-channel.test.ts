/**
 * TLS channels in one process, over loopback: a verified channel carries bytes both ways; every
 * refusal comes with QEMU's message on the side that refuses; a refused or silent peer never
 * stops the destination's listener from taking the next, good one.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as netConnect } from 'node:net';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  TLS_PENDING_MAX,
  connect,
  listen,
  migrationTlsClient,
  migrationTlsGetCreds,
  migrationTlsServer,
  tlsClientChannel,
  tlsServerChannel,
} from '../../src/migration/transport/index.ts';
import type {
  MigrationConnection,
  MigrationListener,
  TlsParameters,
} from '../../src/migration/transport/index.ts';
import { UserObjects } from '../../src/security/index.ts';
import { makeTestPki } from './certs.ts';
import type { CredsDir, TestPki } from './certs.ts';

let pki: TestPki;
before(() => {
  pki = makeTestPki();
});
after(() => pki.remove());

const ALLOW_SOURCE = (id: string) => ({
  'qom-type': 'authz-list',
  id: 'auth0',
  policy: 'deny',
  rules: [{ match: id, policy: 'allow' }],
});

/** Objects of one side: server creds + authz, or one client dir's creds. */
function objectsFor(dir: CredsDir, verifyPeer = true): UserObjects {
  const objects = new UserObjects();
  const endpoint = dir.startsWith('server') ? 'server' : 'client';
  objects.add({
    'qom-type': 'tls-creds-x509',
    id: 'tls0',
    dir: pki.dirs[dir],
    endpoint,
    'verify-peer': verifyPeer,
    // the load-time check would refuse it: here the destination is the one to refuse it
    // The load-time check would refuse these (a certificate from another CA; a client trusting
    // only ca2 while its own certificate comes from ca): here the peer must be the one to refuse.
    'sanity-check': dir !== 'client-other-ca' && dir !== 'client-distrust',
  });
  if (dir === 'server') objects.add(ALLOW_SOURCE(pki.identity.source));
  return objects;
}

const params = (over: Partial<TlsParameters> = {}): TlsParameters => ({
  'tls-creds': 'tls0',
  'tls-hostname': '',
  'tls-authz': 'auth0',
  ...over,
});

interface Destination {
  listener: MigrationListener;
  port: number;
  refusals: string[];
  /** Resolves with the next refusal's message. */
  nextRefusal(): Promise<string>;
}

async function destination(t: { after: (fn: () => Promise<void>) => void }, verifyPeer = true) {
  const objects = objectsFor('server', verifyPeer);
  const refusals: string[] = [];
  let waiter: ((m: string) => void) | null = null;
  const wrap = migrationTlsServer(
    objects,
    params(),
    { transport: 'tcp', host: '', port: 0 },
    (e) => {
      refusals.push(e.message);
      waiter?.(e.message);
      waiter = null;
    },
  )!;
  const raw = await listen('tcp::0');
  const listener = wrap(raw);
  t.after(() => listener.close());
  const uri = listener.uri;
  assert.equal(uri.transport, 'tcp');
  const d: Destination = {
    listener,
    port: uri.transport === 'tcp' ? uri.port : 0,
    refusals,
    nextRefusal: () => new Promise((resolve) => (waiter = resolve)),
  };
  return d;
}

/** A source channel to the destination with the creds of `dir`. */
async function source(
  port: number,
  dir: CredsDir,
  over: Partial<TlsParameters> = {},
): Promise<MigrationConnection> {
  const uri = { transport: 'tcp', host: '127.0.0.1', port } as const;
  const upgrade = migrationTlsClient(objectsFor(dir), params(over), uri)!;
  const raw = await connect(uri);
  return upgrade(raw, new AbortController().signal);
}

/** The source writes, the destination answers on the return path. */
async function exchange(
  a: MigrationConnection,
  accepted: Promise<MigrationConnection>,
): Promise<MigrationConnection> {
  a.writable!.write('QEVM hello');
  const b = await accepted;
  const [got] = (await once(b.readable!, 'data')) as [Buffer];
  assert.equal(got.toString(), 'QEVM hello');
  b.writable!.write('return path');
  const [back] = (await once(a.readable!, 'data')) as [Buffer];
  assert.equal(back.toString(), 'return path');
  return b;
}

test('a verified channel carries the stream one way and the return path the other', async (t) => {
  const d = await destination(t);
  const accepted = d.listener.accept();
  const src = await source(d.port, 'client');
  const dst = await exchange(src, accepted);
  assert.match(
    src.description,
    /^tcp .* \(TLSv1\.3, peer C=GB,O=vfio-migration tests,CN=destination\)$/,
  );
  assert.match(dst.description, /\(TLSv1\.3, peer C=GB,O=vfio-migration tests,CN=source\)$/);
  src.destroy();
  dst.destroy();
  assert.deepEqual(d.refusals, []);
});

test('refusals on the destination: plain TCP, another CA, an unlisted DN, no certificate', async (t) => {
  const d = await destination(t);
  const accepted = d.listener.accept();

  let refusal = d.nextRefusal();
  const plain: Socket = netConnect({ host: '127.0.0.1', port: d.port });
  plain.on('error', () => undefined);
  plain.write(Buffer.from('QEVM\0\0\0\x03'));
  assert.match(await refusal, /^TLS handshake failed: /);
  await once(plain, 'close');

  const cases: [CredsDir, string][] = [
    ['client-other-ca', "The certificate hasn't got a known issuer"],
    ['client-unlisted', `TLS x509 authz check for ${pki.identity.stranger} is denied`],
    ['client-nocert', 'Verify failed: No certificate was found.'],
  ];
  for (const [dir, message] of cases) {
    refusal = d.nextRefusal();
    // TLS 1.3: the client's handshake is over before the server checks; its first use fails.
    const src = await source(d.port, dir).catch((err: Error) => err);
    assert.equal(await refusal, message, dir);
    if (!(src instanceof Error)) {
      src.writable!.write('QEVM');
      await once(src.readable!, 'close');
    }
  }

  // The listener kept going: the real source still gets in.
  const good = await source(d.port, 'client');
  const dst = await exchange(good, accepted);
  good.destroy();
  dst.destroy();
});

test('refusals on the source: an untrusted destination, a hostname mismatch, no TLS', async (t) => {
  const d = await destination(t);
  let refusal = d.nextRefusal();
  await assert.rejects(source(d.port, 'client-distrust'), {
    message: "The certificate hasn't got a known issuer",
  });
  // The destination sees the source leave at the end of the handshake, or right after it.
  assert.match(await refusal, /closed the channel right after the TLS handshake|socket hang up/);

  refusal = d.nextRefusal();
  await assert.rejects(source(d.port, 'client', { 'tls-hostname': 'other.example' }), {
    message: 'Certificate does not match the hostname other.example',
  });
  await refusal;
  // the name in the certificate and its IP address both match
  (await source(d.port, 'client', { 'tls-hostname': 'localhost' })).destroy();

  const plain = await listen('tcp:127.0.0.1:0');
  t.after(() => plain.close());
  const port = plain.uri.transport === 'tcp' ? plain.uri.port : 0;
  void plain.accept().then((c) => c.destroy()); // a plain destination: not a TLS peer
  const raw = await connect(`tcp:127.0.0.1:${port}`);
  const creds = migrationTlsGetCreds(objectsFor('client'), params(), 'client');
  await assert.rejects(tlsClientChannel(raw, { creds, hostname: '127.0.0.1' }), (err: Error) => {
    assert.match(err.message, /^TLS handshake failed: /);
    return true;
  });
});

test('TLS over a UNIX socket, with tls-hostname naming the certificate', async (t) => {
  const path = join(pki.root, 'mig.sock');
  const uri = { transport: 'unix', path } as const;
  const wrap = migrationTlsServer(objectsFor('server'), params(), uri, (e) => assert.fail(e))!;
  const listener = wrap(await listen(uri));
  t.after(() => listener.close());
  const accepted = listener.accept();
  const upgrade = migrationTlsClient(
    objectsFor('client'),
    params({ 'tls-hostname': 'localhost' }),
    uri,
  )!;
  const src = await upgrade(await connect(uri), new AbortController().signal);
  const dst = await exchange(src, accepted);
  assert.match(
    dst.description,
    /^unix .*\(TLSv1\.3, peer C=GB,O=vfio-migration tests,CN=source\)$/,
  );
  src.destroy();
  dst.destroy();
});

test('a CRL in the server dir: a revoked client certificate is refused', async (t) => {
  const objects = new UserObjects();
  objects.add(`tls-creds-x509,id=tls0,dir=${pki.dirs['server-crl']},endpoint=server`);
  const creds = migrationTlsGetCreds(objects, params(), 'server');
  const l = await listen('tcp:127.0.0.1:0');
  t.after(() => l.close());
  const port = l.uri.transport === 'tcp' ? l.uri.port : 0;
  const attempt = async (dir: CredsDir) => {
    const accepted = l.accept();
    const src = source(port, dir).catch((err: Error) => err);
    const dst = tlsServerChannel(await accepted, { creds, authorize: null });
    const client = await src;
    if (!(client instanceof Error)) client.writable!.write('QEVM');
    try {
      return (await dst).description;
    } catch (err) {
      return (err as Error).message;
    } finally {
      if (!(client instanceof Error)) client.destroy();
    }
  };
  assert.match(await attempt('client'), /peer C=GB,O=vfio-migration tests,CN=source\)$/);
  assert.equal(await attempt('client-unlisted'), 'The certificate has been revoked');
});

test('verify-peer=off on the destination: no client certificate asked for, authz not consulted', async (t) => {
  const d = await destination(t, false);
  const accepted = d.listener.accept();
  const src = await source(d.port, 'client-nocert');
  src.writable!.write('QEVM');
  const dst = await accepted;
  assert.match(dst.description, /\(TLSv1\.3\)$/, 'no peer identity');
  src.destroy();
  dst.destroy();
});

test('silent peers time out, cancel aborts a handshake, handshakes in progress are bounded', async (t) => {
  const creds = migrationTlsGetCreds(objectsFor('server'), params(), 'server');
  const l = await listen('tcp:127.0.0.1:0');
  t.after(() => l.close());
  const port = l.uri.transport === 'tcp' ? l.uri.port : 0;

  // connected, never says anything
  const silent = netConnect({ host: '127.0.0.1', port });
  silent.on('error', () => undefined);
  const conn = await l.accept();
  await assert.rejects(tlsServerChannel(conn, { creds, authorize: null, timeoutMs: 200 }), {
    message: /^TLS handshake failed: /,
  });
  silent.destroy();

  // a server that accepts and never answers: the source's cancel ends the handshake
  const client = migrationTlsGetCreds(objectsFor('client'), params(), 'client');
  const abort = new AbortController();
  const pending = tlsClientChannel(await connect(`tcp:127.0.0.1:${port}`), {
    creds: client,
    hostname: '127.0.0.1',
    signal: abort.signal,
  });
  (await l.accept()).readable!.resume();
  abort.abort(new Error('migration cancelled'));
  await assert.rejects(pending, { message: 'migration cancelled' });

  // TLS_PENDING_MAX silent connections; the next one is refused at once
  const d = await destination(t);
  const sockets: Socket[] = [];
  t.after(() => sockets.forEach((s) => s.destroy()));
  for (let i = 0; i <= TLS_PENDING_MAX; i++) {
    const s = netConnect({ host: '127.0.0.1', port: d.port });
    s.on('error', () => undefined);
    sockets.push(s);
  }
  assert.equal(await d.nextRefusal(), `${TLS_PENDING_MAX} TLS handshakes already running`);
});

test("resolving tls-creds: QEMU's messages, hostnames, plain file channels", () => {
  const objects = objectsFor('server');
  const tcp = { transport: 'tcp', host: '127.0.0.1', port: 1 } as const;
  const unix = { transport: 'unix', path: '/tmp/x.sock' } as const;
  const file = { transport: 'file', path: '/tmp/x', offset: 0 } as const;
  assert.throws(() => migrationTlsClient(objects, params({ 'tls-creds': 'nope' }), tcp), {
    message: "No TLS credentials with id 'nope'",
  });
  assert.throws(() => migrationTlsClient(objects, params({ 'tls-creds': 'auth0' }), tcp), {
    message: "Object with id 'auth0' is not TLS credentials",
  });
  assert.throws(() => migrationTlsClient(objects, params(), tcp), {
    message: 'Expected TLS credentials for a client endpoint',
  });
  assert.throws(() => migrationTlsServer(objectsFor('client'), params(), tcp, () => undefined), {
    message: 'Expected TLS credentials for a server endpoint',
  });
  const client = objectsFor('client');
  assert.throws(() => migrationTlsClient(client, params(), unix), {
    message: 'No hostname available for TLS',
  });
  assert.notEqual(migrationTlsClient(client, params({ 'tls-hostname': 'localhost' }), unix), null);
  assert.equal(migrationTlsClient(client, params(), file), null, 'file: is never TLS');
  assert.equal(migrationTlsClient(client, params({ 'tls-creds': '' }), tcp), null);
  assert.equal(migrationTlsClient(undefined, params({ 'tls-creds': '' }), tcp), null);
});
