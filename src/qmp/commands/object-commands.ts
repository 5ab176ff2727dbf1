/**
 * `object-add` and `object-del` (QEMU's qom/qom-qmp-cmds.c) for the objects migration security
 * uses: tls-creds-x509, authz-simple, authz-list. The arguments are QEMU's flat union: `qom-type`,
 * `id` and the type's properties side by side; which properties a type takes, and the messages
 * for wrong ones, come from the objects themselves (security/objects.ts).
 */
import { z } from 'zod';
import { USER_OBJECT_PROPERTIES } from '../../security/index.ts';
import type { UserObjects } from '../../security/index.ts';
import type { QmpServer } from '../server.ts';

const objectAddArgs = z.object({
  'qom-type': z.string(),
  id: z.string(),
  ...Object.fromEntries(USER_OBJECT_PROPERTIES.map((p) => [p, z.unknown().optional()])),
});

export function registerObjectCommands(qmp: QmpServer, objects: UserObjects): void {
  qmp.register('object-add', {
    args: objectAddArgs,
    handler: (args) => {
      objects.add(Object.fromEntries(Object.entries(args).filter(([, v]) => v !== undefined)));
    },
  });
  qmp.register('object-del', {
    args: z.object({ id: z.string() }),
    handler: ({ id }) => objects.del(id),
  });
}
