/**
 * The identity QEMU checks against `tls-authz`: the peer certificate's subject distinguished
 * name as `gnutls_x509_crt_get_dn()` prints it (crypto/tlssession.c). That function keeps
 * GnuTLS's compatibility format: the RDNs in the order the certificate encodes them, joined by
 * ',', the members of a multi-valued RDN joined by '+', values escaped as RFC 4514 says
 * (`\,` `\+` `\"` `\\` `\<` `\>` `\;`, a leading '#' or space, a trailing space). So a
 * certificate made with `-subj /C=GB/O=Example Org/CN=source` is "C=GB,O=Example Org,CN=source".
 *
 * OpenSSL prints the subject one RDN per line in encoding order, multi-valued members joined by
 * " + " (an unescaped '+' is always a separator) and with the same escapes; only the attribute
 * names can differ from GnuTLS's, and of the common ones just the e-mail address does.
 */
import type { X509Certificate } from 'node:crypto';

/** OpenSSL short names that GnuTLS spells differently. */
const GNUTLS_NAMES: Readonly<Record<string, string>> = { emailAddress: 'EMAIL' };

function gnutlsAttribute(ava: string): string {
  const eq = ava.indexOf('=');
  if (eq < 0) return ava;
  const name = ava.slice(0, eq);
  return `${GNUTLS_NAMES[name] ?? name}${ava.slice(eq)}`;
}

/** The subject DN of `cert` as QEMU's authz sees it. */
export function x509DistinguishedName(cert: X509Certificate): string {
  if (cert.subject === '') return '';
  return cert.subject
    .split('\n')
    .map((rdn) => rdn.split(' + ').map(gnutlsAttribute).join('+'))
    .join(',');
}
