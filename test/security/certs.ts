/**
 * Test certificates, made at test time with the `openssl` CLI in a temp dir (EC P-256 keys:
 * fast to generate, and GnuTLS takes them too), laid out as QEMU's tls-creds-x509 `dir`s:
 *
 *   server/           ca-cert.pem (ca), server-cert.pem (CN=destination, SAN localhost and
 *                     127.0.0.1), server-key.pem
 *   client/           ca-cert.pem (ca), client-cert.pem (CN=source), client-key.pem
 *   client-other-ca/  ca-cert.pem (ca), a client certificate with the same DN as client/
 *                     but signed by ca2
 *   client-unlisted/  ca-cert.pem (ca), a client certificate CN=stranger signed by ca
 *   client-distrust/  ca-cert.pem (ca2 only: the destination's certificate is not trusted),
 *                     the good client certificate
 *   client-nocert/    ca-cert.pem (ca) alone
 *   server-crl/       as server/, plus ca-crl.pem: ca's CRL, which revokes CN=stranger
 *
 * plus the raw pieces (keys, CAs) for the load-time checks.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { x509DistinguishedName } from '../../src/security/index.ts';

export const SUBJECT_PREFIX = '/C=GB/O=vfio-migration tests';

export interface TestPki {
  readonly root: string;
  /** tls-creds-x509 dirs, by name (see the file comment). */
  readonly dirs: Readonly<Record<CredsDir, string>>;
  /** The DN QEMU's authz sees for each client certificate. */
  readonly identity: { readonly source: string; readonly stranger: string };
  /** A file path in `root`. */
  file(name: string): string;
  /** Every private key's PEM, to check that none is ever printed. */
  readonly keys: readonly string[];
  remove(): void;
}

export type CredsDir =
  | 'server'
  | 'server-crl'
  | 'client'
  | 'client-other-ca'
  | 'client-unlisted'
  | 'client-distrust'
  | 'client-nocert';

function openssl(cwd: string, args: string[]): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], timeout: 20_000 });
}

/** `openssl` arguments written as one line (no argument here contains a space). */
const words = (line: string) => line.trim().split(/\s+/);

const EC = '-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes';

function makeCa(cwd: string, name: string, cn: string): void {
  openssl(cwd, [
    ...words(`req -x509 ${EC} -keyout ${name}-key.pem -out ${name}-cert.pem -days 2`),
    ...words('-addext basicConstraints=critical,CA:TRUE'),
    ...words('-addext keyUsage=critical,keyCertSign,cRLSign'),
    '-subj',
    `${SUBJECT_PREFIX}/CN=${cn}`,
  ]);
}

let serial = 1;

/** A leaf certificate `name`-cert.pem / `name`-key.pem signed by `ca`. */
export function makeLeaf(
  cwd: string,
  name: string,
  ca: string,
  subject: string,
  extensions: string,
  days = 2,
): void {
  openssl(cwd, [
    ...words(`req -new ${EC} -keyout ${name}-key.pem -out ${name}.csr`),
    '-subj',
    subject,
  ]);
  writeFileSync(join(cwd, `${name}.ext`), extensions);
  openssl(
    cwd,
    words(
      `x509 -req -in ${name}.csr -CA ${ca}-cert.pem -CAkey ${ca}-key.pem -days ${days} ` +
        `-set_serial ${serial++} -out ${name}-cert.pem -extfile ${name}.ext`,
    ),
  );
}

const SERVER_EXT =
  'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n' +
  'extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n';
const CLIENT_EXT =
  'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n' +
  'extendedKeyUsage=clientAuth\n';

/** Each dir: the CA it trusts, and its own certificate (raw name) if any. */
const LAYOUT: readonly [CredsDir, string, string | null][] = [
  ['server', 'ca', 'server'],
  ['client', 'ca', 'client'],
  ['client-other-ca', 'ca', 'client2'],
  ['client-unlisted', 'ca', 'stranger'],
  ['client-distrust', 'ca2', 'client'],
  ['client-nocert', 'ca', null],
  ['server-crl', 'ca', 'server'],
];

/** ca's CRL revoking `revoked` (raw names), as raw/ca-crl.pem. */
function makeCrl(cwd: string, revoked: readonly string[]): void {
  writeFileSync(join(cwd, 'index.txt'), '');
  writeFileSync(
    join(cwd, 'ca.cnf'),
    '[ca]\ndefault_ca = ca_default\n[ca_default]\ndatabase = index.txt\ndefault_md = sha256\n' +
      'default_crl_days = 2\n',
  );
  const ca = words('-config ca.cnf -keyfile ca-key.pem -cert ca-cert.pem');
  for (const r of revoked) openssl(cwd, ['ca', ...ca, '-revoke', `${r}-cert.pem`]);
  openssl(cwd, ['ca', ...ca, '-gencrl', '-out', 'ca-crl.pem']);
}

export function makeTestPki(): TestPki {
  const root = mkdtempSync(join(tmpdir(), 'vfio-tls-'));
  const raw = join(root, 'raw');
  mkdirSync(raw);
  makeCa(raw, 'ca', 'Test CA');
  makeCa(raw, 'ca2', 'Other CA');
  makeLeaf(raw, 'server', 'ca', `${SUBJECT_PREFIX}/CN=destination`, SERVER_EXT);
  makeLeaf(raw, 'client', 'ca', `${SUBJECT_PREFIX}/CN=source`, CLIENT_EXT);
  makeLeaf(raw, 'client2', 'ca2', `${SUBJECT_PREFIX}/CN=source`, CLIENT_EXT);
  makeLeaf(raw, 'stranger', 'ca', `${SUBJECT_PREFIX}/CN=stranger`, CLIENT_EXT);
  makeCrl(raw, ['stranger']);

  const dirs = {} as Record<CredsDir, string>;
  for (const [dir, ca, leaf] of LAYOUT) {
    const path = join(root, dir);
    mkdirSync(path);
    copyFileSync(join(raw, `${ca}-cert.pem`), join(path, 'ca-cert.pem'));
    if (leaf !== null) {
      const role = dir.startsWith('server') ? 'server' : 'client';
      copyFileSync(join(raw, `${leaf}-cert.pem`), join(path, `${role}-cert.pem`));
      copyFileSync(join(raw, `${leaf}-key.pem`), join(path, `${role}-key.pem`));
    }
    if (dir === 'server-crl') copyFileSync(join(raw, 'ca-crl.pem'), join(path, 'ca-crl.pem'));
    dirs[dir] = path;
  }
  const dn = (name: string) =>
    x509DistinguishedName(new X509Certificate(readFileSync(join(raw, `${name}-cert.pem`))));
  return {
    root,
    dirs,
    identity: { source: dn('client'), stranger: dn('stranger') },
    file: (name) => join(raw, name),
    keys: ['ca', 'ca2', 'server', 'client', 'client2', 'stranger'].map((n) =>
      readFileSync(join(raw, `${n}-key.pem`), 'utf8'),
    ),
    remove: () => rmSync(root, { recursive: true, force: true }),
  };
}

/** The base64 body lines of a PEM key: none of them may appear in any output. */
export function keyLines(pem: string): string[] {
  return pem.split('\n').filter((l) => l.length >= 16 && !l.startsWith('-----'));
}
