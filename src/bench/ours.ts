/** Our side of a benchmark: a source and a destination `vfio-migrate run` process. */
import { VmProcess } from '../cli/vm-process.ts';
import type { MigrationPair } from './pair.ts';

export interface OurPairOptions {
  /** Names the processes' files in `dir` (config, QMP socket). */
  readonly name: string;
  /** QEMU's -S on the source: the guest is paused when the migration starts. */
  readonly sourcePaused: boolean;
  /** -S on the destination: the guest stays paused after the load (default: it runs). */
  readonly destinationPaused?: boolean;
  /** Config keys only the destination gets (e.g. mem-prealloc). */
  readonly destinationConfig?: Record<string, unknown>;
  /** `--incoming defer`: the destination listens at `migrate-incoming` (multifd needs it). */
  readonly deferIncoming?: boolean;
}

/**
 * Starts the destination (listening on a free loopback port, or waiting for
 * `migrate-incoming`) and then the source, both from `config` (the destination ignores
 * `populate` and `loader`).
 */
export async function startOurPair(
  dir: string,
  config: Record<string, unknown>,
  opts: OurPairOptions,
): Promise<MigrationPair> {
  const destination = await VmProcess.spawn({
    name: `${opts.name}-dst`,
    dir,
    config: { ...config, ...opts.destinationConfig },
    incoming: opts.deferIncoming === true ? 'defer' : 'tcp:127.0.0.1:0',
    paused: opts.destinationPaused ?? false,
  });
  let source: VmProcess;
  try {
    source = await VmProcess.spawn({
      name: `${opts.name}-src`,
      dir,
      config,
      paused: opts.sourcePaused,
    });
  } catch (err) {
    await destination.stop();
    throw err;
  }
  const uri = destination.ready.incoming;
  if (uri === null && opts.deferIncoming !== true) {
    await Promise.allSettled([source.stop(), destination.stop()]);
    throw new Error('the destination VM is not listening');
  }
  return {
    source: { qmp: source.qmp, pid: source.child.pid ?? -1 },
    destination: { qmp: destination.qmp, pid: destination.child.pid ?? -1 },
    uri,
    async stop(): Promise<void> {
      await Promise.allSettled([source.stop(), destination.stop()]);
    },
  };
}
