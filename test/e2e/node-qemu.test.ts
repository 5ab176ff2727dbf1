/** A QMP client this project did not write (node-qemu, from npm) drives a whole migration. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { QMPClient } from 'node-qemu';
import { E2e, smallGuest } from './harness.ts';

interface QueryMigrate {
  status?: string;
}

test('node-qemu drives a complete migration between two vfio-migrate processes', async (t) => {
  const e = new E2e(t);
  const config = smallGuest();
  const [dstVm, srcVm] = await Promise.all([e.destination(config), e.source(config)]);
  const src = new QMPClient({ socketPath: srcVm.ready.qmp.slice('unix:'.length) });
  const dst = new QMPClient({ socketPath: dstVm.ready.qmp.slice('unix:'.length) });
  await src.connect();
  await dst.connect();
  t.after(async () => {
    await src.close();
    await dst.close();
  });
  for (const c of [src, dst]) {
    await c.migrateSetCapabilities([
      { capability: 'events', state: true },
      { capability: 'return-path', state: true },
    ]);
  }
  await src.migrateSetParameters({ 'downtime-limit': 500 });
  await src.migrate({ uri: dstVm.ready.incoming! });
  let info: QueryMigrate = {};
  for (let i = 0; i < 600 && !['completed', 'failed'].includes(info.status ?? ''); i++) {
    await new Promise((r) => setTimeout(r, 100));
    info = await src.execute<QueryMigrate>('query-migrate');
  }
  assert.equal(info.status, 'completed');
  const status = await src.execute<{ status: string }>('query-status');
  assert.equal(status.status, 'postmigrate');
  await assert.rejects(src.execute('no-such-command'), /no-such-command/);
});
