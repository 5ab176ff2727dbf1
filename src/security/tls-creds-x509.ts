/**
 * `tls-creds-x509` (QEMU's crypto/tlscredsx509.c): x509 credentials loaded from a directory
 * whose files have QEMU's names. An endpoint `server` needs ca-cert.pem, server-cert.pem and
 * server-key.pem (ca-crl.pem and dh-params.pem are optional); a `client` needs ca-cert.pem and
 * may have client-cert.pem + client-key.pem. `verify-peer` (default on) makes the session
 * check the peer's certificate (tls-session.ts); `sanity-check` (default on) checks our own
 * files at load time, with QEMU's messages.
 *
 * The private key is read once, checked against the certificate, and kept only inside this
 * object's private state: it never appears in a message, in `util.inspect` or in JSON.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import type { SecureContext, SecureContextOptions } from 'node:tls';
import { getSystemErrorMap } from 'node:util';

export const QCRYPTO_TLS_CREDS_X509_CA_CERT = 'ca-cert.pem';
export const QCRYPTO_TLS_CREDS_X509_CA_CRL = 'ca-crl.pem';
export const QCRYPTO_TLS_CREDS_X509_SERVER_CERT = 'server-cert.pem';
export const QCRYPTO_TLS_CREDS_X509_SERVER_KEY = 'server-key.pem';
export const QCRYPTO_TLS_CREDS_X509_CLIENT_CERT = 'client-cert.pem';
export const QCRYPTO_TLS_CREDS_X509_CLIENT_KEY = 'client-key.pem';
export const QCRYPTO_TLS_CREDS_DH_PARAMS = 'dh-params.pem';

export const TLS_CREDS_ENDPOINTS = ['client', 'server'] as const;
export type TlsCredsEndpoint = (typeof TLS_CREDS_ENDPOINTS)[number];

/** Most CA certificates in ca-cert.pem (QEMU's MAX_CERTS). */
export const MAX_CA_CERTS = 16;
/** Largest credential file read (certificates, keys, CRLs are a few KiB). */
export const CREDS_FILE_MAX = 1 << 20;
/** Oldest protocol a session accepts. */
export const TLS_MIN_VERSION = 'TLSv1.2';

export interface TlsCredsX509Options {
  readonly id: string;
  readonly dir?: string;
  readonly endpoint: TlsCredsEndpoint;
  readonly verifyPeer: boolean;
  readonly sanityCheck: boolean;
}

export class TlsCredsError extends Error {
  override readonly name = 'TlsCredsError';
}

/** `strerror(errno)` for a failed fs call. */
function strerror(err: unknown): string {
  const errno = (err as NodeJS.ErrnoException).errno;
  const text = errno === undefined ? undefined : getSystemErrorMap().get(errno)?.[1];
  if (text === undefined) return err instanceof Error ? err.message : String(err);
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** The reason of an OpenSSL error, without its internal location. */
function reasonOf(err: unknown): string {
  const e = err as { reason?: unknown; message?: unknown };
  if (typeof e.reason === 'string' && e.reason !== '') return e.reason;
  return typeof e.message === 'string' ? e.message : String(err);
}

/** `qcrypto_tls_creds_get_path`: DIR/FILE if it exists; null for a missing optional file. */
function credsPath(dir: string | undefined, file: string, required: boolean): string | null {
  if (dir === undefined) {
    if (required) throw new TlsCredsError("Missing 'dir' property value");
    return null;
  }
  const path = `${dir}/${file}`;
  try {
    statSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !required) return null;
    throw new TlsCredsError(`Unable to access credentials ${path}: ${strerror(err)}`);
  }
  return path;
}

/** Reads a credential file, refusing one too large to be a credential. */
function readCreds(path: string, what: (detail: string) => string): Buffer {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (err) {
    throw new TlsCredsError(what(strerror(err)));
  }
  if (size > CREDS_FILE_MAX) {
    throw new TlsCredsError(what(`${size} bytes is more than ${CREDS_FILE_MAX}`));
  }
  try {
    return readFileSync(path);
  } catch (err) {
    throw new TlsCredsError(what(strerror(err)));
  }
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

/** The PEM blocks of one label (e.g. "CERTIFICATE"), at most `max` + 1 of them. */
function pemBlocks(data: Buffer, label: string, max: number): string[] {
  const text = data.toString('latin1');
  const blocks: string[] = [];
  for (const m of text.matchAll(PEM_BLOCK)) {
    if (m[1] === label) blocks.push(m[0]);
    if (blocks.length > max) break;
  }
  return blocks;
}

function certificateOf(pem: string): X509Certificate {
  return new X509Certificate(pem);
}

function timeOf(text: string): number {
  return new Date(text).getTime();
}

type Role = 'server' | 'client' | 'CA';

/** `qcrypto_tls_creds_check_cert_times`. */
function checkCertTimes(cert: X509Certificate, file: string, role: Role): void {
  const now = Date.now();
  if (timeOf(cert.validTo) < now) {
    throw new TlsCredsError(`The ${role} certificate ${file} has expired`);
  }
  if (timeOf(cert.validFrom) > now) {
    throw new TlsCredsError(`The ${role} certificate ${file} is not yet active`);
  }
}

/** `qcrypto_tls_creds_check_cert_basic_constraints`. */
function checkBasicConstraints(cert: X509Certificate, file: string, role: Role): void {
  if (role === 'CA' && !cert.ca) {
    throw new TlsCredsError(`The certificate ${file} basic constraints do not show a CA`);
  }
  if (role !== 'CA' && cert.ca) {
    throw new TlsCredsError(
      `The certificate ${file} basic constraints show a CA, but we need one for a ${role}`,
    );
  }
}

/**
 * `qcrypto_tls_creds_check_cert_pair`: our certificate chains up to a CA of ca-cert.pem
 * (through intermediates also found there).
 */
function checkCertPair(
  cert: X509Certificate,
  certFile: string,
  cas: readonly X509Certificate[],
  caFile: string,
): void {
  let current = cert;
  for (let depth = 0; depth <= cas.length; depth++) {
    const issuer = cas.find((ca) => current.checkIssued(ca) && current.verify(ca.publicKey));
    if (issuer === undefined) break;
    if (issuer.checkIssued(issuer)) return;
    current = issuer;
  }
  throw new TlsCredsError(
    `Our own certificate ${certFile} failed validation against ${caFile}: ` +
      "The certificate hasn't got a known issuer",
  );
}

interface LoadedFiles {
  ca: string[];
  cert: X509Certificate | null;
  /** PEM of our certificate and key, only when both exist. */
  pair: { cert: Buffer; key: Buffer } | null;
  crl: Buffer | null;
  dhparam: Buffer | null;
}

/** `qcrypto_tls_creds_x509_load`: every check and message in QEMU's order. */
function loadFiles(o: TlsCredsX509Options): LoadedFiles {
  const server = o.endpoint === 'server';
  const caFile = credsPath(o.dir, QCRYPTO_TLS_CREDS_X509_CA_CERT, true)!;
  const crlFile = server ? credsPath(o.dir, QCRYPTO_TLS_CREDS_X509_CA_CRL, false) : null;
  const certFile = credsPath(
    o.dir,
    server ? QCRYPTO_TLS_CREDS_X509_SERVER_CERT : QCRYPTO_TLS_CREDS_X509_CLIENT_CERT,
    server,
  );
  const keyFile = credsPath(
    o.dir,
    server ? QCRYPTO_TLS_CREDS_X509_SERVER_KEY : QCRYPTO_TLS_CREDS_X509_CLIENT_KEY,
    server,
  );
  const dhFile = server ? credsPath(o.dir, QCRYPTO_TLS_CREDS_DH_PARAMS, false) : null;
  const role: Role = server ? 'server' : 'client';

  let certPem: Buffer | null = null;
  let cert: X509Certificate | null = null;
  if (certFile !== null) {
    certPem = readCreds(certFile, (d) => `Cannot load CA cert list ${certFile}: ${d}`);
    try {
      cert = certificateOf(pemBlocks(certPem, 'CERTIFICATE', 1)[0] ?? '');
    } catch (err) {
      throw new TlsCredsError(`Unable to import ${role} certificate ${certFile}: ${reasonOf(err)}`);
    }
  }
  const caPem = readCreds(caFile, (d) => `Cannot load CA cert list ${caFile}: ${d}`);
  const ca = pemBlocks(caPem, 'CERTIFICATE', MAX_CA_CERTS);
  let cas: X509Certificate[];
  try {
    if (ca.length === 0 || ca.length > MAX_CA_CERTS) throw new Error('no list');
    cas = ca.map(certificateOf);
  } catch {
    throw new TlsCredsError(`Unable to import CA certificate list ${caFile}`);
  }

  if (o.sanityCheck) {
    if (cert !== null) {
      checkCertTimes(cert, certFile!, role);
      checkBasicConstraints(cert, certFile!, role);
    }
    for (const c of cas) {
      checkCertTimes(c, caFile, 'CA');
      checkBasicConstraints(c, caFile, 'CA');
    }
    if (cert !== null) checkCertPair(cert, certFile!, cas, caFile);
  }

  let pair: LoadedFiles['pair'] = null;
  if (certPem !== null && keyFile !== null) {
    const cantLoad = (why: string) =>
      new TlsCredsError(`Cannot load certificate '${certFile}' & key '${keyFile}': ${why}`);
    const key = readCreds(keyFile, (d) => cantLoad(d).message);
    let matches: boolean;
    try {
      matches = cert!.checkPrivateKey(createPrivateKey(key));
    } catch (err) {
      key.fill(0);
      throw cantLoad(reasonOf(err));
    }
    if (!matches) {
      key.fill(0);
      throw cantLoad('The certificate and the given key do not match.');
    }
    pair = { cert: certPem, key };
  }

  let crl: Buffer | null = null;
  if (crlFile !== null) {
    crl = readCreds(crlFile, (d) => `Cannot load CRL '${crlFile}': ${d}`);
    if (pemBlocks(crl, 'X509 CRL', 1).length === 0) {
      throw new TlsCredsError(`Cannot load CRL '${crlFile}': no X509 CRL in the file`);
    }
  }
  const dhparam =
    dhFile === null
      ? null
      : readCreds(dhFile, (d) => `Unable to load DH parameters from ${dhFile}: ${d}`);
  return { ca, cert, pair, crl, dhparam };
}

export class TlsCredsX509 {
  readonly id: string;
  readonly type = 'tls-creds-x509';
  readonly endpoint: TlsCredsEndpoint;
  readonly verifyPeer: boolean;
  readonly dir: string | undefined;
  /** Our own certificate; null for a client without one. */
  readonly certificate: X509Certificate | null;
  readonly #options: SecureContextOptions;
  readonly #context: SecureContext;

  private constructor(o: TlsCredsX509Options, files: LoadedFiles) {
    this.id = o.id;
    this.endpoint = o.endpoint;
    this.verifyPeer = o.verifyPeer;
    this.dir = o.dir;
    this.certificate = files.cert;
    this.#options = {
      minVersion: TLS_MIN_VERSION,
      ca: files.ca,
      ...(files.pair && { cert: files.pair.cert, key: files.pair.key }),
      ...(files.crl && { crl: files.crl }),
      ...(files.dhparam && { dhparam: files.dhparam }),
    };
    try {
      this.#context = createSecureContext(this.#options);
    } catch (err) {
      throw new TlsCredsError(`Cannot set session credentials: ${reasonOf(err)}`);
    }
  }

  /** Loads and checks the files (the object's `complete`); throws with QEMU's messages. */
  static load(options: TlsCredsX509Options): TlsCredsX509 {
    return new TlsCredsX509(options, loadFiles(options));
  }

  /** The context for a client session (tls.connect's `secureContext`). */
  get secureContext(): SecureContext {
    return this.#context;
  }

  /**
   * Options for a `tls.Server`, which builds its own context: these hold the private key, so
   * they are handed to node:tls and never to anything that prints.
   */
  serverOptions(): SecureContextOptions {
    return { ...this.#options };
  }

  /** What `qom-get` would show: never the key. */
  toJSON(): Record<string, unknown> {
    return {
      'qom-type': this.type,
      id: this.id,
      dir: this.dir,
      endpoint: this.endpoint,
      'verify-peer': this.verifyPeer,
      loaded: true,
    };
  }
}
