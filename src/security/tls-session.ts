/**
 * The check of a peer's certificate once a TLS handshake is done (QEMU's
 * `qcrypto_tls_session_check_credentials` in crypto/tlssession.c), with its messages. As in
 * QEMU, the TLS library only reports what it found (node:tls runs with rejectUnauthorized off
 * and hands over OpenSSL's verify result); the decision and its wording are made here:
 *
 *   1. with verify-peer off nothing is checked (not even the authz list);
 *   2. the peer must have sent a certificate, and it must verify against ca-cert.pem;
 *   3. its distinguished name must be allowed by tls-authz, when there is one (server side);
 *   4. it must match the hostname we connected to (client side); a client without a hostname
 *      cannot validate the certificate and refuses.
 */
import { isIP } from 'node:net';
import type { X509Certificate } from 'node:crypto';
import { x509DistinguishedName } from './distinguished-name.ts';
import type { TlsCredsEndpoint } from './tls-creds-x509.ts';

export class TlsSessionError extends Error {
  override readonly name = 'TlsSessionError';
}

/** OpenSSL's verify results, grouped as GnuTLS's status bits are in QEMU's message. */
const UNKNOWN_ISSUER = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
]);
const INSECURE_ALGORITHM = new Set(['CA_KEY_TOO_SMALL', 'EE_KEY_TOO_SMALL', 'CA_MD_TOO_WEAK']);

/** QEMU's reason for a certificate that did not verify; `code` is OpenSSL's X509_V_ERR name. */
export function verifyFailureReason(code: string): string {
  if (UNKNOWN_ISSUER.has(code)) return "The certificate hasn't got a known issuer";
  if (code === 'CERT_REVOKED') return 'The certificate has been revoked';
  if (INSECURE_ALGORITHM.has(code)) return 'The certificate uses an insecure algorithm';
  if (code === 'CERT_HAS_EXPIRED') return 'The certificate has expired';
  if (code === 'CERT_NOT_YET_VALID') return 'The certificate is not yet activated';
  return 'The certificate is not trusted';
}

export interface PeerCheck {
  /** Our side of the session. */
  readonly endpoint: TlsCredsEndpoint;
  /** The creds' verify-peer. */
  readonly verifyPeer: boolean;
  /** The certificate the peer sent, if any. */
  readonly peer: X509Certificate | undefined;
  /** OpenSSL's verdict on the peer's chain: null when it verified. */
  readonly verifyError: string | null;
  /** The name the client connected to (client side). */
  readonly hostname: string | null;
  /** The tls-authz decision on the peer's DN (server side); may throw for a bad authz id. */
  readonly authorize: ((identity: string) => boolean) | null;
}

/** Does `cert` name `hostname` (a DNS name, or an IP address in its subjectAltName)? */
function matchesHostname(cert: X509Certificate, hostname: string): boolean {
  return (isIP(hostname) !== 0 ? cert.checkIP(hostname) : cert.checkHost(hostname)) !== undefined;
}

/**
 * `qcrypto_tls_session_check_credentials`: returns the peer's distinguished name (or null
 * when verify-peer is off), or throws TlsSessionError with QEMU's message.
 */
export function checkPeerCertificate(c: PeerCheck): string | null {
  if (!c.verifyPeer) return null;
  if (c.peer === undefined) throw new TlsSessionError('Verify failed: No certificate was found.');
  if (c.verifyError !== null) throw new TlsSessionError(verifyFailureReason(c.verifyError));
  const peername = x509DistinguishedName(c.peer);
  if (c.authorize !== null && !c.authorize(peername)) {
    throw new TlsSessionError(`TLS x509 authz check for ${peername} is denied`);
  }
  if (c.hostname !== null) {
    if (!matchesHostname(c.peer, c.hostname)) {
      throw new TlsSessionError(`Certificate does not match the hostname ${c.hostname}`);
    }
  } else if (c.endpoint === 'client') {
    throw new TlsSessionError('No hostname for certificate validation');
  }
  return peername;
}
