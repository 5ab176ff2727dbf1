/**
 * Migration security, as QEMU's crypto/ and authz/ provide it: x509 TLS credentials loaded
 * from QEMU-named files, the check of a peer's certificate after a handshake, authorization
 * lists over the peer's distinguished name, and the container of user-creatable objects that
 * `-object`, `object-add` and the migration parameters tls-creds / tls-authz refer to.
 * Imports nothing of ours: migration/ and above use it.
 */
export * from './authz.ts';
export * from './distinguished-name.ts';
export * from './object-string.ts';
export * from './objects.ts';
export * from './properties.ts';
export * from './tls-creds-x509.ts';
export * from './tls-session.ts';
