/**
 * A source and a destination process driven over QMP — ours or QEMU's — and one migration
 * between them timed the same way for both: from the `migrate` command to the destination's
 * MIGRATION event saying `completed`, with unlimited bandwidth and otherwise QEMU's defaults.
 */
import { listenIncoming } from '../cli/incoming.ts';
import { migrationIsFinished } from '../migration/index.ts';
import type { MigrationStatus } from '../migration/index.ts';
import type { QmpClient } from '../qmp/index.ts';
import { peakRssBytes } from './proc.ts';

export interface PairEnd {
  readonly qmp: QmpClient;
  readonly pid: number;
}

export interface MigrationPair {
  readonly source: PairEnd;
  readonly destination: PairEnd;
  /**
   * Where the destination listens, as `migrate` takes it; null when it waits for
   * `migrate-incoming` (`-incoming defer`), as multifd needs: its capability and channel count
   * must be set on the destination before it listens.
   */
  readonly uri: string | null;
  stop(): Promise<void>;
}

export interface TimedMigration {
  readonly seconds: number;
  /** The source's query-migrate once completed. */
  readonly info: Record<string, unknown>;
  readonly destPeakRssBytes: number | null;
  readonly srcPeakRssBytes: number | null;
}

interface MigrationEventData {
  status?: MigrationStatus;
}

export interface MigrationSettings {
  /** Set on the source (e.g. downtime-limit); max-bandwidth is always 0 (unlimited). */
  readonly parameters?: Record<string, unknown>;
  /** Capabilities turned on on both sides (events always is, on the destination). */
  readonly capabilities?: readonly string[];
  /**
   * Multifd with this many channels on both sides (the `multifd` capability and the
   * `multifd-channels` parameter); the pair's destination must wait with `-incoming defer`.
   */
  readonly multifdChannels?: number;
}

/** Runs one migration of `pair` and times it. */
export async function timeMigration(
  pair: MigrationPair,
  timeoutMs: number,
  settings: MigrationSettings = {},
): Promise<TimedMigration> {
  const { source, destination } = pair;
  const on = (names: readonly string[]) => ({
    capabilities: names.map((capability) => ({ capability, state: true })),
  });
  const channels = settings.multifdChannels;
  const both = [...(settings.capabilities ?? []), ...(channels === undefined ? [] : ['multifd'])];
  if (both.length > 0) await source.qmp.execute('migrate-set-capabilities', on(both));
  await destination.qmp.execute('migrate-set-capabilities', on([...both, 'events']));
  if (channels !== undefined) {
    for (const end of [source, destination]) {
      await end.qmp.execute('migrate-set-parameters', { 'multifd-channels': channels });
    }
  }
  await source.qmp.execute('migrate-set-parameters', {
    ...settings.parameters,
    'max-bandwidth': 0,
  });
  if ((pair.uri === null) !== (channels !== undefined)) {
    throw new Error('a multifd migration needs a deferred destination, and only it does');
  }
  const uri = pair.uri ?? (await listenIncoming(destination.qmp));
  const ended = destination.qmp.waitEvent(
    'MIGRATION',
    (e) => {
      const status = (e.data as MigrationEventData | undefined)?.status;
      return migrationIsFinished(status ?? 'none');
    },
    timeoutMs,
  );
  const t0 = performance.now();
  await source.qmp.execute('migrate', { uri });
  const event = await ended;
  const seconds = (performance.now() - t0) / 1000;
  const status = (event.data as MigrationEventData | undefined)?.status;
  if (status !== 'completed') {
    const why = await destination.qmp.execute<{ 'error-desc'?: string }>('query-migrate');
    throw new Error(`the migration ended ${status}: ${why['error-desc'] ?? 'no reason given'}`);
  }
  // The source completes before or right after the destination: wait for its final figures.
  const deadline = performance.now() + timeoutMs;
  let info = await source.qmp.execute<Record<string, unknown>>('query-migrate');
  while (info.status !== 'completed' && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 5));
    info = await source.qmp.execute<Record<string, unknown>>('query-migrate');
  }
  return {
    seconds,
    info,
    destPeakRssBytes: peakRssBytes(destination.pid),
    srcPeakRssBytes: peakRssBytes(source.pid),
  };
}
