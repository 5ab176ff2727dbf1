/**
 * The identity string (GnuTLS's DN format, which the QEMU interop test confirms against a real
 * QEMU) and the post-handshake check of the peer certificate, in QEMU's order and words.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import {
  checkPeerCertificate,
  verifyFailureReason,
  x509DistinguishedName,
} from '../../src/security/index.ts';
import type { PeerCheck } from '../../src/security/index.ts';
import { makeLeaf, makeTestPki } from './certs.ts';
import type { TestPki } from './certs.ts';

let pki: TestPki;
before(() => {
  pki = makeTestPki();
});
after(() => pki.remove());

const cert = (name: string) => new X509Certificate(readFileSync(pki.file(`${name}-cert.pem`)));

test('the DN: encoding order, RFC 4514 escapes, multi-valued RDNs, EMAIL', () => {
  assert.equal(x509DistinguishedName(cert('client')), 'C=GB,O=vfio-migration tests,CN=source');
  assert.equal(x509DistinguishedName(cert('ca')), 'C=GB,O=vfio-migration tests,CN=Test CA');
  makeLeaf(
    pki.file(''),
    'tricky',
    'ca',
    '/C=GB/O=Example, Org/OU=a\\+b;c/OU=x+UID=y/emailAddress=me@example.org/CN= src"1\\\\x',
    'basicConstraints=CA:FALSE\n',
  );
  assert.equal(
    x509DistinguishedName(cert('tricky')),
    'C=GB,O=Example\\, Org,OU=a\\+b\\;c,OU=x+UID=y,EMAIL=me@example.org,CN=\\ src\\"1\\\\x',
  );
});

const base = (over: Partial<PeerCheck>): PeerCheck => ({
  endpoint: 'server',
  verifyPeer: true,
  peer: cert('client'),
  verifyError: null,
  hostname: null,
  authorize: null,
  ...over,
});

test("the peer check, in QEMU's order: presence, chain, authz, hostname", () => {
  assert.equal(checkPeerCertificate(base({})), pki.identity.source);
  assert.equal(checkPeerCertificate(base({ verifyPeer: false, peer: undefined })), null);
  assert.throws(() => checkPeerCertificate(base({ peer: undefined })), {
    message: 'Verify failed: No certificate was found.',
  });
  assert.throws(
    () =>
      checkPeerCertificate(
        base({ verifyError: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', authorize: () => false }),
      ),
    { message: "The certificate hasn't got a known issuer" },
    'the chain is checked before the identity',
  );
  const seen: string[] = [];
  assert.throws(
    () =>
      checkPeerCertificate(
        base({
          authorize: (id) => {
            seen.push(id);
            return false;
          },
        }),
      ),
    { message: `TLS x509 authz check for ${pki.identity.source} is denied` },
  );
  assert.deepEqual(seen, [pki.identity.source]);

  const server = cert('server');
  const client = (hostname: string | null) =>
    checkPeerCertificate(base({ endpoint: 'client', peer: server, hostname }));
  assert.equal(client('localhost'), 'C=GB,O=vfio-migration tests,CN=destination');
  assert.equal(client('127.0.0.1'), 'C=GB,O=vfio-migration tests,CN=destination');
  assert.throws(() => client('127.0.0.2'), {
    message: 'Certificate does not match the hostname 127.0.0.2',
  });
  assert.throws(() => client('destination'), {
    message: 'Certificate does not match the hostname destination',
    // the CN is not a name once the certificate has DNS names
  });
  assert.throws(() => client(null), { message: 'No hostname for certificate validation' });
});

test("OpenSSL's verify results in QEMU's words", () => {
  const cases: [string, string][] = [
    ['UNABLE_TO_GET_ISSUER_CERT_LOCALLY', "The certificate hasn't got a known issuer"],
    ['DEPTH_ZERO_SELF_SIGNED_CERT', "The certificate hasn't got a known issuer"],
    ['SELF_SIGNED_CERT_IN_CHAIN', "The certificate hasn't got a known issuer"],
    ['CERT_REVOKED', 'The certificate has been revoked'],
    ['CA_MD_TOO_WEAK', 'The certificate uses an insecure algorithm'],
    ['CERT_HAS_EXPIRED', 'The certificate has expired'],
    ['CERT_NOT_YET_VALID', 'The certificate is not yet activated'],
    ['CERT_SIGNATURE_FAILURE', 'The certificate is not trusted'],
  ];
  for (const [code, reason] of cases) assert.equal(verifyFailureReason(code), reason, code);
});
