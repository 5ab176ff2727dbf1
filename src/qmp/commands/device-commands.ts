/**
 * QMP commands about the VM's devices: `device_del` (unplug; the VFIO layer re-evaluates the
 * multiple-devices blocker) and the extension `x-query-p2p`: every simulated device's P2P
 * transactions as each side logged them, with the counters its state holds, so a client can
 * check that no transaction was initiated while quiesced and none was lost in a migration.
 */
import { z } from 'zod';
import { SimDevice, p2pInitiatorKey } from '../../device/sim/index.ts';
import type { P2pTransaction } from '../../device/sim/index.ts';
import { stateName } from '../../uapi/index.ts';
import type { Vm } from '../../vm/index.ts';
import type { QmpServer } from '../server.ts';

function transaction(t: P2pTransaction): Record<string, unknown> {
  return {
    seq: t.seq,
    from: t.from,
    to: t.to,
    offset: t.offset,
    length: t.length,
    'device-state': stateName(t.state),
    accepted: t.accepted,
  };
}

export function registerDeviceCommands(qmp: QmpServer, vm: Vm): void {
  qmp.register('device_del', {
    args: z.object({ id: z.string() }),
    handler: ({ id }) => vm.removeDevice(id),
  });

  qmp.register('x-query-p2p', {
    handler: () => {
      const sims = vm.devices.filter((d) => d instanceof SimDevice);
      const byKey = new Map(vm.config.devices.map((d) => [p2pInitiatorKey(d.id), d.id]));
      return {
        devices: sims.map((d) => ({
          id: d.id,
          'tx-count': d.p2pTxCount,
          sent: d.p2pLog.sent.map(transaction),
          received: d.p2pLog.received.map(transaction),
          dropped: { sent: d.p2pLog.droppedSent, received: d.p2pLog.droppedReceived },
          'received-counters': d.p2pReceivedCounters().map((c) => ({
            from: byKey.get(c.key) ?? null,
            key: c.key,
            count: c.count,
            'last-seq': c.lastSeq,
          })),
        })),
      };
    },
  });
}
