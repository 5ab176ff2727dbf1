/**
 * The migration parameters tls-creds, tls-hostname and tls-authz put to work (QEMU's
 * migration/tls.c): when tls-creds names credentials, every socket channel is upgraded before
 * anything of the stream is written or read; a `file:` channel never is, as in QEMU
 * (`migrate_channel_requires_tls_upgrade` only upgrades sockets).
 *
 * The credentials are resolved before the source connects and before the destination listens,
 * with QEMU's messages, so a wrong id fails the command that needs it instead of every
 * connection. tls-authz is looked up at each handshake, as QEMU does.
 */
import type { TlsCredsEndpoint, TlsCredsX509, UserObjects } from '../../security/index.ts';
import { isTlsCreds } from '../../security/index.ts';
import type { MigrationParameters } from '../options/index.ts';
import type { MigrationConnection } from './connection.ts';
import type { MigrationListener } from './index.ts';
import { tlsClientChannel, tlsServerChannel } from './tls.ts';
import { TlsListener } from './tls-listener.ts';
import type { ChannelRefused } from './tls-listener.ts';
import type { MigrationUri } from './uri.ts';

export type TlsParameters = Pick<MigrationParameters, 'tls-creds' | 'tls-hostname' | 'tls-authz'>;

/** `migrate_tls` + `migrate_channel_requires_tls_upgrade`. */
export function migrationRequiresTls(params: TlsParameters, uri: MigrationUri): boolean {
  return params['tls-creds'] !== '' && uri.transport !== 'file';
}

/** `migration_tls_get_creds`. */
export function migrationTlsGetCreds(
  objects: UserObjects | undefined,
  params: TlsParameters,
  endpoint: TlsCredsEndpoint,
): TlsCredsX509 {
  const id = params['tls-creds'];
  const creds = objects?.get(id);
  if (creds === undefined) throw new Error(`No TLS credentials with id '${id}'`);
  if (!isTlsCreds(creds)) throw new Error(`Object with id '${id}' is not TLS credentials`);
  if (creds.endpoint !== endpoint) {
    throw new Error(`Expected TLS credentials for a ${endpoint} endpoint`);
  }
  return creds;
}

/**
 * The source's upgrade for channels to `uri` (`migration_tls_client_create`), or null when
 * the channel stays plain. The hostname checked is tls-hostname, else the URI's host.
 */
export function migrationTlsClient(
  objects: UserObjects | undefined,
  params: TlsParameters,
  uri: MigrationUri,
): ((conn: MigrationConnection, signal: AbortSignal) => Promise<MigrationConnection>) | null {
  if (!migrationRequiresTls(params, uri)) return null;
  const creds = migrationTlsGetCreds(objects, params, 'client');
  const hostname =
    params['tls-hostname'] !== ''
      ? params['tls-hostname']
      : uri.transport === 'tcp'
        ? uri.host
        : null;
  if (hostname === null || hostname === '') throw new Error('No hostname available for TLS');
  return (conn, signal) => tlsClientChannel(conn, { creds, hostname, signal });
}

/**
 * The destination's wrapping of its listener on `uri` (`migration_tls_channel_process_incoming`),
 * or null when the channel stays plain: the wrapped listener only yields verified channels and
 * reports each refusal.
 */
export function migrationTlsServer(
  objects: UserObjects | undefined,
  params: TlsParameters,
  uri: MigrationUri,
  refused: ChannelRefused,
): ((listener: MigrationListener) => MigrationListener) | null {
  if (!migrationRequiresTls(params, uri)) return null;
  const creds = migrationTlsGetCreds(objects, params, 'server');
  const authzId = params['tls-authz'];
  const authorize =
    authzId === ''
      ? null
      : (identity: string) => {
          if (objects === undefined) throw new Error(`Cannot find QAuthZ object ID ${authzId}`);
          return objects.isAllowedById(authzId, identity);
        };
  return (listener) =>
    new TlsListener(
      listener,
      (conn, signal) => tlsServerChannel(conn, { creds, authorize, signal }),
      refused,
    );
}
