/**
 * Where a destination listens, asked over QMP: ours and QEMU's both report in query-migrate's
 * `socket-address` the port picked for port 0.
 */
import type { MigrationInfo } from '../migration/index.ts';
import type { QmpClient } from '../qmp/index.ts';

/** `migrate-incoming` on a deferred destination, on a free loopback port; the URI to migrate to. */
export async function listenIncoming(qmp: QmpClient): Promise<string> {
  await qmp.execute('migrate-incoming', { uri: 'tcp:127.0.0.1:0' });
  return incomingUri(qmp);
}

/** The URI of a destination already listening on loopback. */
export async function incomingUri(qmp: QmpClient): Promise<string> {
  const info = await qmp.execute<MigrationInfo>('query-migrate');
  const address = info['socket-address']?.[0];
  const port = address?.type === 'inet' ? Number(address.port) : NaN;
  if (!Number.isInteger(port) || port <= 0) {
    throw new Error(`the destination reports no listening TCP port: ${JSON.stringify(info)}`);
  }
  return `tcp:127.0.0.1:${port}`;
}
