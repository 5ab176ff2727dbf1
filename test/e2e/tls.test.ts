/**
 * TLS migration between two processes, with certificates made at test time: a TLS migration
 * loses nothing; every wrong peer is refused before any state is read — the destination stays
 * in setup with nothing loaded and keeps listening, the source guest keeps running with its
 * devices RUNNING — and a right peer then gets in. No key material is ever printed.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { connect } from 'node:net';
import { listenIncoming } from '../../src/cli/incoming.ts';
import type { VmProcess } from '../../src/cli/vm-process.ts';
import { encodeMultifdInit } from '../../src/migration/multifd/wire.ts';
import { keyLines, makeTestPki } from '../security/certs.ts';
import type { TestPki } from '../security/certs.ts';
import type { VfioInfo } from './harness.ts';
import { MULTIFD_RUNNING, multifdGuest, setMultifd } from './multifd-harness.ts';
import {
  CAPS,
  E2e,
  deviceStates,
  digest,
  finished,
  query,
  runStatus,
  setCaps,
  sleep,
  smallGuest,
  waitFor,
} from './harness.ts';

const RUNNING = { nic0: 'RUNNING', gpu0: 'RUNNING' };

let pki: TestPki;
before(() => {
  pki = makeTestPki();
});
after(() => pki.remove());

/** Client credentials `tls0` from one of the test dirs, replacing any earlier ones. */
async function useClientCreds(src: VmProcess, dir: keyof TestPki['dirs']): Promise<void> {
  await src.qmp.execute('object-del', { id: 'tls0' }).catch(() => undefined);
  await src.qmp.execute('object-add', {
    'qom-type': 'tls-creds-x509',
    id: 'tls0',
    dir: pki.dirs[dir],
    endpoint: 'client',
    // These two are refused by the load-time check; the point is that the peer refuses them.
    'sanity-check': dir !== 'client-other-ca' && dir !== 'client-distrust',
  });
  await src.qmp.execute('migrate-set-parameters', { 'tls-creds': 'tls0', 'tls-hostname': null });
}

/**
 * A TLS destination: server creds, an allow-list of the source's DN, listening on loopback;
 * with `multifd` channels, multifd set before it listens.
 */
async function tlsDestination(e: E2e, config: Record<string, unknown>, multifd?: number) {
  const dst = await e.spawn({
    name: 'dst',
    incoming: 'defer',
    paused: true,
    config: {
      ...config,
      objects: [
        `tls-creds-x509,id=tls0,dir=${pki.dirs.server},endpoint=server,verify-peer=on`,
        {
          'qom-type': 'authz-list',
          id: 'auth0',
          policy: 'deny',
          rules: [{ match: pki.identity.source, policy: 'allow' }],
        },
      ],
    },
  });
  if (multifd === undefined) await setCaps(dst, CAPS);
  else await setMultifd(dst, multifd);
  await dst.qmp.execute('migrate-set-parameters', { 'tls-creds': 'tls0', 'tls-authz': 'auth0' });
  return { dst, uri: await listenIncoming(dst.qmp) };
}

/** A failed migration left the source whole: guest running, devices RUNNING. */
async function assertSourceIntact(src: VmProcess, error: RegExp | string): Promise<string> {
  const info = await waitFor(src, finished, 'the failure');
  assert.equal(info.status, 'failed');
  if (typeof error === 'string') assert.equal(info['error-desc'], error);
  else assert.match(info['error-desc'] ?? '', error);
  assert.equal(await runStatus(src), 'running');
  assert.deepEqual(await deviceStates(src), RUNNING);
  return info['error-desc'] ?? '';
}

/**
 * The destination never left setup (a status only moves forward) and loaded nothing: no
 * device ever entered RESUMING.
 */
async function assertDestinationUntouched(dst: VmProcess): Promise<void> {
  assert.equal((await query(dst)).status, 'setup');
  assert.equal(await runStatus(dst), 'inmigrate');
  const vfio = await dst.qmp.execute<VfioInfo>('x-query-vfio');
  for (const d of vfio.devices) {
    assert.deepEqual(
      d['state-log'].filter((x) => x['device-state'] === 'resuming'),
      [],
      `${d.id} never loaded anything`,
    );
  }
}

/** `vm` writes a line matching `pattern` on stderr within 10 s. */
async function assertLogs(vm: VmProcess, pattern: RegExp): Promise<void> {
  const end = Date.now() + 10_000;
  while (!pattern.test(vm.stderr) && Date.now() < end) await sleep(20);
  assert.match(vm.stderr, pattern);
}

function assertNoKeyMaterial(...texts: string[]): void {
  for (const key of pki.keys) {
    for (const line of keyLines(key)) {
      for (const text of texts) assert.ok(!text.includes(line), 'a private key was printed');
    }
  }
}

test('TLS migration: every wrong peer is refused before any state is read, then the right one gets in', async (t) => {
  const e = new E2e(t);
  const config = smallGuest();
  const [{ dst, uri }, src] = await Promise.all([tlsDestination(e, config), e.source(config)]);
  await setCaps(src, CAPS);
  const replies: string[] = [];
  const refusal = async (pattern: RegExp) => {
    await waitFor(src, finished, 'the source noticing');
    await assertLogs(dst, pattern);
  };
  const migrate = async () => {
    await src.qmp.execute('migrate', { uri });
  };

  await t.test('a plain TCP source', async (st) => {
    await migrate();
    await refusal(/incoming channel .* refused: TLS handshake failed: /);
    st.diagnostic(`source: ${await assertSourceIntact(src, /./)}`);
    await assertDestinationUntouched(dst);
  });

  await t.test('tls-creds naming nothing: QEMU message, nothing sent', async () => {
    await src.qmp.execute('migrate-set-parameters', { 'tls-creds': 'tls0' });
    await migrate();
    await assertSourceIntact(src, "No TLS credentials with id 'tls0'");
  });

  await t.test('a client certificate from another CA', async (st) => {
    await useClientCreds(src, 'client-other-ca');
    await migrate();
    await refusal(/refused: The certificate hasn't got a known issuer/);
    st.diagnostic(`source: ${await assertSourceIntact(src, /./)}`);
    await assertDestinationUntouched(dst);
  });

  await t.test('an identity not in the authz list', async (st) => {
    await useClientCreds(src, 'client-unlisted');
    await migrate();
    await refusal(
      /refused: TLS x509 authz check for C=GB,O=vfio-migration tests,CN=stranger is denied/,
    );
    st.diagnostic(`source: ${await assertSourceIntact(src, /./)}`);
    await assertDestinationUntouched(dst);
  });

  await t.test("a source that does not trust the destination's CA", async () => {
    await useClientCreds(src, 'client-distrust');
    await migrate();
    await assertSourceIntact(src, "The certificate hasn't got a known issuer");
    await assertDestinationUntouched(dst);
  });

  await t.test('a hostname the destination certificate does not carry', async () => {
    await useClientCreds(src, 'client');
    await src.qmp.execute('migrate-set-parameters', { 'tls-hostname': 'other.example' });
    await migrate();
    await assertSourceIntact(src, 'Certificate does not match the hostname other.example');
    await assertDestinationUntouched(dst);
  });

  await t.test('the right source: completed, nothing lost', async () => {
    await src.qmp.execute('migrate-set-parameters', { 'tls-hostname': null });
    await migrate();
    const info = await waitFor(src, finished, 'the TLS migration');
    assert.equal(info.status, 'completed', JSON.stringify(info));
    assert.equal((await waitFor(dst, finished, 'the destination')).status, 'completed');
    const [a, b] = await Promise.all([digest(src), digest(dst)]);
    assert.equal(b.ram.sha256, a.ram.sha256);
    assert.deepEqual(b.devices, a.devices);
    replies.push(JSON.stringify(await query(src)), JSON.stringify(await query(dst)));
    replies.push(JSON.stringify(await src.qmp.execute('query-migrate-parameters')));
  });

  assertNoKeyMaterial(src.stderr, dst.stderr, ...replies);
});

/** Writes a multifd channel's handshake (MultiFDInit_t, channel `id`) in the clear. */
function plainMultifdChannel(uri: string, id: number): Promise<void> {
  const port = Number(uri.slice(uri.lastIndexOf(':') + 1));
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port }, () => {
      socket.write(encodeMultifdInit(Buffer.alloc(16), id));
    });
    socket.on('error', () => undefined);
    socket.on('close', () => resolve());
    setTimeout(() => {
      socket.destroy();
      reject(new Error('the destination kept a plain multifd channel open'));
    }, 10_000).unref();
  });
}

test('TLS with multifd: a plain multifd channel is refused; every channel of the migration goes through TLS, nothing lost', async (t) => {
  const e = new E2e(t);
  const CHANNELS = 3;
  const config = multifdGuest();
  const [{ dst, uri }, src] = await Promise.all([
    tlsDestination(e, config, CHANNELS),
    e.source(config),
  ]);
  // A peer that speaks multifd without TLS is dropped before its handshake is read.
  await plainMultifdChannel(uri, 0);
  await assertLogs(dst, /incoming channel .* refused: TLS handshake failed/);
  assert.equal((await query(dst)).status, 'setup', 'still waiting for its source');
  assert.deepEqual(
    (await dst.qmp.execute<{ incoming: unknown[] }>('x-query-multifd')).incoming,
    [],
    'no multifd channel was taken',
  );

  await setMultifd(src, CHANNELS);
  await useClientCreds(src, 'client');
  await src.qmp.execute('migrate', { uri });
  const info = await waitFor(src, finished, 'the TLS multifd migration');
  assert.equal(info.status, 'completed', JSON.stringify(info));
  assert.equal((await waitFor(dst, finished, 'the destination')).status, 'completed');
  const [a, b] = await Promise.all([digest(src), digest(dst)]);
  assert.equal(b.ram.sha256, a.ram.sha256);
  assert.deepEqual(b.devices, a.devices);
  // The destination only takes TLS channels: all of them carried their share.
  const m = await dst.qmp.execute<{ incoming: { packets: number }[] }>('x-query-multifd');
  assert.equal(m.incoming.length, CHANNELS);
  for (const c of m.incoming) assert.ok(c.packets > 0);
  assert.ok((info.ram?.['multifd-bytes'] ?? 0) > 0);
  await dst.qmp.execute('cont');
  assert.deepEqual(await deviceStates(dst), MULTIFD_RUNNING);
  assertNoKeyMaterial(src.stderr, dst.stderr);
});

test('TLS source to a plain destination: refused, the source guest keeps running', async (t) => {
  const e = new E2e(t);
  const config = smallGuest();
  const { src, dst } = await e.pair(config);
  await useClientCreds(src, 'client');
  await src.qmp.execute('migrate', { uri: dst.ready.incoming });
  await assertSourceIntact(src, /^TLS handshake failed: /);
  // The plain destination took the TLS hello for a stream and refused its first bytes.
  const info = await waitFor(dst, finished, 'the destination');
  assert.equal(info.status, 'failed');
  assert.match(info['error-desc'] ?? '', /file magic/);
  assert.notEqual(await runStatus(dst), 'running');
});

test('QMP errors for objects and TLS parameters use QEMU messages', async (t) => {
  const e = new E2e(t);
  const dst = await e.spawn({ name: 'dst', incoming: 'defer', config: smallGuest() });
  const error = (p: Promise<unknown>) =>
    p.then(
      () => assert.fail('accepted'),
      (err: Error) => err.message,
    );
  assert.match(
    await error(
      dst.qmp.execute('object-add', {
        'qom-type': 'tls-creds-x509',
        id: 'tls0',
        dir: '/nonexistent',
      }),
    ),
    /Unable to access credentials \/nonexistent\/ca-cert\.pem: No such file or directory/,
  );
  await dst.qmp.execute('object-add', {
    'qom-type': 'tls-creds-x509',
    id: 'tls0',
    dir: pki.dirs.client,
    endpoint: 'client',
  });
  await dst.qmp.execute('migrate-set-parameters', { 'tls-creds': 'tls0' });
  assert.match(
    await error(dst.qmp.execute('migrate-incoming', { uri: 'tcp:127.0.0.1:0' })),
    /Expected TLS credentials for a server endpoint/,
  );
  assert.match(
    await error(dst.qmp.execute('object-del', { id: 'auth0' })),
    /object 'auth0' not found/,
  );
  assert.match(
    await error(dst.qmp.execute('object-add', { 'qom-type': 'authz-simple', id: 'a', bogus: 1 })),
    /bogus/,
  );
  assert.equal((await query(dst)).status, undefined, 'the incoming migration never started');
});
