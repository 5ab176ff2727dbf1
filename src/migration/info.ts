/**
 * `query-migrate`'s answer in QAPI's shape and field names (`MigrationInfo`,
 * qemu-migration.md §5.1). Each side fills in what it knows; as in `qmp_query_migrate`, the
 * destination's part is filled first and the source's overrides it once a source migration
 * ever started.
 */
import type { MigrationStatus } from './status.ts';

/** `MigrationStats` ("ram"); `transferred` counts every migration byte, not only RAM. */
export interface MigrationRamInfo {
  transferred: number;
  remaining: number;
  total: number;
  duplicate: number;
  normal: number;
  'normal-bytes': number;
  'dirty-pages-rate': number;
  mbps: number;
  'dirty-sync-count': number;
  'postcopy-requests': number;
  'page-size': number;
  'multifd-bytes': number;
  'pages-per-second': number;
  'precopy-bytes': number;
  'downtime-bytes': number;
  'postcopy-bytes': number;
  'dirty-sync-missed-zero-copy': number;
  'iteration-count': number;
}

/** `VfioStats`: filled by the VFIO layer through a MigrationInfoProvider. */
export interface VfioStatsInfo {
  transferred: number;
}

/** `SocketAddress` of a listening destination (QAPI spells the port as a string). */
export type SocketAddressInfo =
  { type: 'inet'; host: string; port: string } | { type: 'unix'; path: string };

export interface MigrationInfo {
  status?: MigrationStatus;
  ram?: MigrationRamInfo;
  vfio?: VfioStatsInfo;
  'total-time'?: number;
  'expected-downtime'?: number;
  downtime?: number;
  'setup-time'?: number;
  'error-desc'?: string;
  'blocked-reasons'?: string[];
  'socket-address'?: SocketAddressInfo[];
}

/**
 * Adds fields to `query-migrate` from a layer the core does not know (VFIO adds
 * `vfio: {transferred}`), without the core importing it. `populate` runs for the states that
 * show statistics (active, cancelling, pre-switchover, device, completed).
 */
export interface MigrationInfoProvider {
  populate(info: MigrationInfo): void;
  /** `migrate_init`: a new migration starts; counters go back to zero. */
  reset?(): void;
}

/** One side of the VM's migration, as `query-migrate` sees it. */
export interface MigrationInfoSource {
  fillInfo(info: MigrationInfo): void;
}

/** `qmp_query_migrate`: the destination's view first, then the source's. */
export function queryMigrate(
  incoming: MigrationInfoSource | null,
  outgoing: MigrationInfoSource | null,
): MigrationInfo {
  const info: MigrationInfo = {};
  incoming?.fillInfo(info);
  outgoing?.fillInfo(info);
  return info;
}
