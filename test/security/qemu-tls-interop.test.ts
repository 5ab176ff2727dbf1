/**
 * TLS migration with a real QEMU 7.2 on the other end (skipped when qemu-system-x86_64 is
 * absent), with the certificates of certs.ts, for a VM like `-machine none -m 16M`:
 *
 * - our source → a QEMU destination whose authz-simple identity is the DN we compute for our
 *   client certificate: accepted, so QEMU (GnuTLS) sees exactly the identity string we do;
 *   with another identity QEMU refuses us and names our DN in its message;
 * - a QEMU source → our destination, which checks QEMU's client certificate against its list.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { TestContext } from 'node:test';
import { Vm, parseVmConfig } from '../../src/vm/index.ts';
import {
  GUEST_RAM,
  destinationArgs,
  patternFiles,
  patternRam,
  qemu72Migration,
  qemuGuestRam,
  qemuListen,
  qemuOrSkip,
  setReturnPath,
  sourceArgs,
  startQemu,
  waitMigration,
} from '../helpers/qemu.ts';
import { x509DistinguishedName } from '../../src/security/index.ts';
import { makeLeaf, makeTestPki } from './certs.ts';
import type { TestPki } from './certs.ts';

const { qemu, skip } = qemuOrSkip('QEMU TLS interop tests');

let pki: TestPki;
before(() => {
  pki = makeTestPki();
});
after(() => pki.remove());

function ourVm(objects: unknown[], incoming?: string, parameters: Record<string, string> = {}) {
  const config = parseVmConfig({
    machine: 'none',
    'ram-blocks': [{ idstr: 'ram', size: GUEST_RAM }],
    vcpus: 0,
    objects,
    ...(incoming !== undefined && { populate: false }),
  });
  return Vm.create(config, { incoming, migration: qemu72Migration(parameters) });
}

/** A QEMU destination with server credentials and authz-simple `identity`, listening. */
async function qemuDestination(t: TestContext, identity: string) {
  const q = await startQemu(qemu!, () => destinationArgs('defer'), { t });
  await q.qmp.execute('object-add', {
    'qom-type': 'tls-creds-x509',
    id: 'tls0',
    dir: pki.dirs.server,
    endpoint: 'server',
    'verify-peer': true,
  });
  await q.qmp.execute('object-add', { 'qom-type': 'authz-simple', id: 'auth0', identity });
  await setReturnPath(q.qmp);
  await q.qmp.execute('migrate-set-parameters', { 'tls-creds': 'tls0', 'tls-authz': 'auth0' });
  return { q, uri: await qemuListen(q.qmp) };
}

const clientCreds = {
  'qom-type': 'tls-creds-x509',
  id: 'tls0',
  endpoint: 'client',
} as const;

test(
  'our TLS source into a QEMU 7.2 destination that allows our DN: completed, memory equal',
  { skip, timeout: 60_000 },
  async (t) => {
    const { q, uri } = await qemuDestination(t, pki.identity.source);
    const src = await ourVm([{ ...clientCreds, dir: pki.dirs.client }], undefined, {
      'tls-creds': 'tls0',
    });
    t.after(() => src.destroy());
    src.migration.outgoing.migrate(uri);
    const status = await src.migration.outgoing.whenFinished();
    assert.equal(status, 'completed', `${src.migration.outgoing.error?.message}\n${q.log}`);
    assert.equal((await waitMigration(q.qmp)).status, 'completed', q.log);
    const ours = Buffer.from(src.memory.block('ram')!.read(0, GUEST_RAM));
    assert.ok((await qemuGuestRam(q)).equals(ours), 'QEMU guest RAM equals ours');
  },
);

/**
 * A subject with what needs escaping (a comma, a '+' and a ';' in values, a quote, a backslash, a
 * leading space), a multi-valued RDN and an e-mail address.
 */
const TRICKY_SUBJECT =
  '/C=GB/O=Example, Org/OU=a\\+b;c/OU=x+UID=y/emailAddress=me@example.org/CN= src"1\\\\x';

test(
  'a QEMU 7.2 destination refuses an unlisted DN, and names exactly the DN we compute',
  { skip, timeout: 60_000 },
  async (t) => {
    const { q, uri } = await qemuDestination(t, 'C=GB,O=vfio-migration tests,CN=someone-else');
    makeLeaf(pki.file(''), 'tricky', 'ca', TRICKY_SUBJECT, 'basicConstraints=CA:FALSE\n');
    const dir = join(pki.root, 'client-tricky');
    mkdirSync(dir);
    copyFileSync(pki.file('ca-cert.pem'), join(dir, 'ca-cert.pem'));
    copyFileSync(pki.file('tricky-cert.pem'), join(dir, 'client-cert.pem'));
    copyFileSync(pki.file('tricky-key.pem'), join(dir, 'client-key.pem'));
    const dn = x509DistinguishedName(
      new X509Certificate(readFileSync(pki.file('tricky-cert.pem'))),
    );
    assert.equal(
      dn,
      'C=GB,O=Example\\, Org,OU=a\\+b\\;c,OU=x+UID=y,EMAIL=me@example.org,CN=\\ src\\"1\\\\x',
    );

    const src = await ourVm([{ ...clientCreds, dir }], undefined, { 'tls-creds': 'tls0' });
    t.after(() => src.destroy());
    src.migration.outgoing.migrate(uri);
    assert.equal(await src.migration.outgoing.whenFinished(), 'failed');
    assert.equal(src.runControl.isRunning(), true, 'the source guest keeps running');
    const deadline = Date.now() + 10_000;
    while (!q.log.includes('authz') && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(
      q.log.includes(`TLS x509 authz check for ${dn} is denied`),
      `QEMU's message names our DN ${dn}: ${q.log}`,
    );
    const info = await q.qmp.execute<{ status?: string }>('query-migrate');
    assert.notEqual(info.status, 'completed');
  },
);

test(
  'a QEMU 7.2 TLS source into our destination, which checks its certificate and DN',
  { skip, timeout: 60_000 },
  async (t) => {
    const dst = await ourVm(
      [
        { 'qom-type': 'tls-creds-x509', id: 'tls0', dir: pki.dirs.server, endpoint: 'server' },
        `authz-list,id=auth0,rules.0.match=${pki.identity.source.replaceAll(',', ',,')},rules.0.policy=allow`,
      ],
      'tcp:127.0.0.1:0',
      { 'tls-creds': 'tls0', 'tls-authz': 'auth0' },
    );
    t.after(() => dst.destroy());
    const bound = dst.migration.incoming.uri;
    assert.ok(bound?.transport === 'tcp');
    const q = await startQemu(
      qemu!,
      (dir) => [
        ...sourceArgs(dir),
        '-object',
        `tls-creds-x509,id=tls0,dir=${pki.dirs.client},endpoint=client`,
      ],
      { t, files: patternFiles() },
    );
    await setReturnPath(q.qmp);
    await q.qmp.execute('migrate-set-parameters', { 'tls-creds': 'tls0' });
    await q.qmp.execute('migrate', { uri: `tcp:127.0.0.1:${bound.port}` });
    const status = await dst.migration.incoming.whenFinished();
    assert.equal(status, 'completed', `${dst.migration.incoming.error?.message}\n${q.log}`);
    assert.equal((await waitMigration(q.qmp)).status, 'completed', q.log);
    const ours = Buffer.from(dst.memory.block('ram')!.read(0, GUEST_RAM));
    assert.ok(ours.equals(patternRam()), 'our RAM equals what QEMU loaded');
  },
);
