/** `vfio-migrate run`: one VM process, driven over QMP like QEMU. */
import type { Command } from 'commander';
import { formatMigrationUri } from '../../migration/transport/index.ts';
import { QmpServer } from '../../qmp/index.ts';
import { registerVmCommands } from '../../qmp/commands/vm-commands.ts';
import { Vm, loadVmConfig } from '../../vm/index.ts';
import { readPackageVersion } from '../version.ts';

interface RunOptions {
  config: string;
  qmp: string;
  incoming?: string;
  paused?: boolean;
}

/** The line `run` prints on stdout once it accepts QMP connections (and migrations). */
export interface RunReadyLine {
  ready: true;
  pid: number;
  qmp: string;
  /** The incoming URI as bound (port 0 resolved), when listening for a migration. */
  incoming: string | null;
}

export async function runVm(opts: RunOptions): Promise<void> {
  const config = loadVmConfig(opts.config);
  const vm = await Vm.create(config, { incoming: opts.incoming, paused: opts.paused });
  let closing: Promise<void> | null = null;
  const shutdown = (code: number) => {
    closing ??= (async () => {
      await qmp.close().catch(() => undefined);
      await vm.destroy();
      process.exit(code);
    })();
    return closing;
  };
  const qmp = new QmpServer({
    package: `vfio-migration ${readPackageVersion()}`,
    onQuit: () => shutdown(0),
  });
  registerVmCommands(qmp, vm);
  vm.onEvent((e) => qmp.emit(e.event, e.data));
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void shutdown(0));
  try {
    const address = await qmp.listen(opts.qmp);
    const bound = vm.migration.incoming.uri;
    const ready: RunReadyLine = {
      ready: true,
      pid: process.pid,
      qmp: address,
      incoming: bound ? formatMigrationUri(bound) : null,
    };
    process.stdout.write(JSON.stringify(ready) + '\n');
  } catch (err) {
    await vm.destroy();
    throw err;
  }
}

export function registerRun(program: Command): void {
  program
    .command('run')
    .description(
      'run one VM process (guest RAM, vCPU threads, simulated VFIO devices) controlled over QMP ' +
        'like QEMU; prints one JSON line {"ready":true,...} on stdout once it accepts commands',
    )
    .requiredOption('--config <file>', 'VM configuration (JSON): memory, vcpus, workload, devices')
    .requiredOption('--qmp <address>', 'QMP server: unix:PATH (created 0600) or tcp:HOST:PORT')
    .option(
      '--incoming <uri>',
      'wait for an incoming migration on tcp:HOST:PORT (port 0 picks one), unix:PATH, file:PATH, ' +
        'or "defer" to wait for migrate-incoming',
    )
    .option('-S, --paused', 'do not start the guest (after an incoming migration: stay paused)')
    .addHelpText(
      'after',
      '\nExample config:\n' +
        '  {"memory": "1G", "vcpus": 2, "workload": {"dirty-rate": 64, "pattern": "hot", ' +
        '"hot-size": "128M"},\n' +
        '   "devices": [{"id": "nic0", "model": "sim:nic,state-size=8M"}]}\n',
    )
    .action(runVm);
}
