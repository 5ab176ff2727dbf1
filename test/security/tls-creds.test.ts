/**
 * tls-creds-x509 loading: QEMU's file names and messages, the load-time sanity checks, and
 * that no message, JSON or inspection ever shows private key material.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { inspect } from 'node:util';
import {
  CREDS_FILE_MAX,
  TlsCredsX509,
  UserObjects,
  x509DistinguishedName,
} from '../../src/security/index.ts';
import type { TlsCredsX509Options } from '../../src/security/index.ts';
import { keyLines, makeLeaf, makeTestPki } from './certs.ts';
import type { TestPki } from './certs.ts';

let pki: TestPki;
before(() => {
  pki = makeTestPki();
});
after(() => pki.remove());

const server = (dir: string, over: Partial<TlsCredsX509Options> = {}): TlsCredsX509Options => ({
  id: 'tls0',
  dir,
  endpoint: 'server',
  verifyPeer: true,
  sanityCheck: true,
  ...over,
});

/** A copy of a creds dir to damage. */
function copyDir(name: keyof TestPki['dirs'], to: string): string {
  const dir = join(pki.root, to);
  rmSync(dir, { recursive: true, force: true });
  cpSync(pki.dirs[name], dir, { recursive: true });
  return dir;
}

function assertNoKeyMaterial(text: string): void {
  for (const key of pki.keys) {
    for (const line of keyLines(key)) assert.ok(!text.includes(line), 'key material printed');
  }
  assert.doesNotMatch(text, /PRIVATE KEY/);
}

function loadError(options: TlsCredsX509Options): string {
  try {
    TlsCredsX509.load(options);
  } catch (err) {
    const message = (err as Error).message;
    assertNoKeyMaterial(message);
    return message;
  }
  return assert.fail('loaded');
}

test('a server and a client dir load; nothing shows the key', () => {
  const s = TlsCredsX509.load(server(pki.dirs.server));
  assert.equal(s.endpoint, 'server');
  assert.equal(x509DistinguishedName(s.certificate!), 'C=GB,O=vfio-migration tests,CN=destination');
  assert.deepEqual(s.toJSON(), {
    'qom-type': 'tls-creds-x509',
    id: 'tls0',
    dir: pki.dirs.server,
    endpoint: 'server',
    'verify-peer': true,
    loaded: true,
  });
  assertNoKeyMaterial(JSON.stringify(s));
  assertNoKeyMaterial(inspect(s, { depth: 10, showHidden: true }));
  const c = TlsCredsX509.load(server(pki.dirs.client, { endpoint: 'client' }));
  assert.equal(x509DistinguishedName(c.certificate!), pki.identity.source);
  const bare = TlsCredsX509.load(server(pki.dirs['client-nocert'], { endpoint: 'client' }));
  assert.equal(bare.certificate, null, 'a client certificate is optional');
});

test("missing files: QEMU's messages, with the path and strerror", () => {
  assert.equal(
    loadError(server(pki.dirs.server, { dir: undefined })),
    "Missing 'dir' property value",
  );
  const dir = copyDir('server', 'no-key');
  rmSync(join(dir, 'server-key.pem'));
  assert.equal(
    loadError(server(dir)),
    `Unable to access credentials ${dir}/server-key.pem: No such file or directory`,
  );
  assert.equal(
    loadError(server(pki.dirs['client-nocert'])),
    `Unable to access credentials ${pki.dirs['client-nocert']}/server-cert.pem: ` +
      'No such file or directory',
    'a server needs its certificate',
  );
  const noCa = copyDir('client', 'no-ca');
  rmSync(join(noCa, 'ca-cert.pem'));
  assert.match(loadError(server(noCa, { endpoint: 'client' })), /ca-cert\.pem: No such file/);
});

test('a key that does not match, or is not a key, is refused without printing it', () => {
  const dir = copyDir('server', 'wrong-key');
  copyFileSync(join(pki.dirs.client, 'client-key.pem'), join(dir, 'server-key.pem'));
  assert.equal(
    loadError(server(dir)),
    `Cannot load certificate '${dir}/server-cert.pem' & key '${dir}/server-key.pem': ` +
      'The certificate and the given key do not match.',
  );
  // A damaged key: its base64 is still there, and must not leak into the message.
  const key = readFileSync(join(pki.dirs.server, 'server-key.pem'), 'utf8');
  writeFileSync(join(dir, 'server-key.pem'), key.replace(/\n([A-Za-z0-9+/]{8})/, '\n!!!!!!!!'));
  assert.match(loadError(server(dir)), /^Cannot load certificate '.*' & key '.*': \S/);
});

test('sanity checks: CA flags, the chain to ca-cert.pem, times, the CA list', () => {
  const caAsLeaf = copyDir('server', 'ca-as-leaf');
  copyFileSync(pki.file('ca-cert.pem'), join(caAsLeaf, 'server-cert.pem'));
  copyFileSync(pki.file('ca-key.pem'), join(caAsLeaf, 'server-key.pem'));
  assert.equal(
    loadError(server(caAsLeaf)),
    `The certificate ${caAsLeaf}/server-cert.pem basic constraints show a CA, ` +
      'but we need one for a server',
  );

  const leafAsCa = copyDir('client', 'leaf-as-ca');
  copyFileSync(pki.file('server-cert.pem'), join(leafAsCa, 'ca-cert.pem'));
  assert.equal(
    loadError(server(leafAsCa, { endpoint: 'client' })),
    `The certificate ${leafAsCa}/ca-cert.pem basic constraints do not show a CA`,
  );

  const otherCa = copyDir('client-other-ca', 'other-ca');
  assert.equal(
    loadError(server(otherCa, { endpoint: 'client' })),
    `Our own certificate ${otherCa}/client-cert.pem failed validation against ` +
      `${otherCa}/ca-cert.pem: The certificate hasn't got a known issuer`,
  );
  // sanity-check=off loads it (the peer will refuse it instead)
  TlsCredsX509.load(server(otherCa, { endpoint: 'client', sanityCheck: false }));

  makeLeaf(pki.file(''), 'expired', 'ca', '/CN=expired', 'basicConstraints=CA:FALSE\n', -1);
  const expired = copyDir('client', 'expired');
  copyFileSync(pki.file('expired-cert.pem'), join(expired, 'client-cert.pem'));
  copyFileSync(pki.file('expired-key.pem'), join(expired, 'client-key.pem'));
  assert.equal(
    loadError(server(expired, { endpoint: 'client' })),
    `The client certificate ${expired}/client-cert.pem has expired`,
  );

  const many = copyDir('client', 'many-cas');
  const ca = readFileSync(pki.file('ca-cert.pem'), 'utf8');
  writeFileSync(join(many, 'ca-cert.pem'), ca.repeat(17));
  assert.equal(
    loadError(server(many, { endpoint: 'client' })),
    `Unable to import CA certificate list ${many}/ca-cert.pem`,
  );
  writeFileSync(join(many, 'ca-cert.pem'), ca.repeat(16));
  TlsCredsX509.load(server(many, { endpoint: 'client' }));
  writeFileSync(join(many, 'ca-cert.pem'), 'not a certificate\n');
  assert.equal(
    loadError(server(many, { endpoint: 'client' })),
    `Unable to import CA certificate list ${many}/ca-cert.pem`,
  );
  writeFileSync(join(many, 'ca-cert.pem'), Buffer.alloc(CREDS_FILE_MAX + 1, 0x41));
  assert.match(loadError(server(many, { endpoint: 'client' })), /is more than 1048576/);
});

test('the container: creds from options, and an authz id that names creds is refused', () => {
  const objects = new UserObjects();
  const creds = objects.add({
    'qom-type': 'tls-creds-x509',
    id: 'tls0',
    dir: pki.dirs.server,
    endpoint: 'server',
  });
  assert.ok(creds instanceof TlsCredsX509);
  assert.ok(creds.certificate instanceof X509Certificate);
  assert.throws(() => objects.isAllowedById('tls0', 'CN=x'), {
    message: "Object 'tls0' is not a QAuthZ subclass",
  });
  assert.throws(
    () => objects.add(`tls-creds-x509,id=tls1,dir=${pki.dirs.client},endpoint=server`),
    /Unable to access credentials .*server-cert\.pem/,
  );
  assert.equal(objects.get('tls1'), undefined, 'a failed add adds nothing');
});
