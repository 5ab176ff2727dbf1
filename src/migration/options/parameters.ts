/**
 * Migration parameters (QAPI `MigrationParameters`, migration/options.c): QEMU's names,
 * defaults and validation messages. `migrate-set-parameters` applies a partial set to a copy,
 * checks the whole result (`migrate_params_check`) and only then commits it. Values this
 * implementation cannot honour (multifd compression, CPR mode) are refused with a clear
 * message instead of being silently ignored. tls-creds and tls-authz name objects; as in QEMU
 * they are looked up when a channel needs them (transport/tls-migration.ts).
 */
import { TARGET_PAGE_SIZE } from '../../memory/page.ts';

export const MULTIFD_COMPRESSIONS = ['none', 'zlib', 'zstd'] as const;
export const MIG_MODES = ['normal', 'cpr-reboot'] as const;
export const ZERO_PAGE_DETECTIONS = ['none', 'legacy', 'multifd'] as const;

export interface MigrationParameters {
  'announce-initial': number;
  'announce-max': number;
  'announce-rounds': number;
  'announce-step': number;
  'throttle-trigger-threshold': number;
  'cpu-throttle-initial': number;
  'cpu-throttle-increment': number;
  'cpu-throttle-tailslow': boolean;
  'tls-creds': string;
  'tls-hostname': string;
  'tls-authz': string;
  /** Bytes per second; 0 = unlimited (§2.2). */
  'max-bandwidth': number;
  /** Bytes per second assumed for the switchover; 0 = use the measured bandwidth. */
  'avail-switchover-bandwidth': number;
  /** Milliseconds the guest may be stopped. */
  'downtime-limit': number;
  'x-checkpoint-delay': number;
  'multifd-channels': number;
  'xbzrle-cache-size': number;
  'max-postcopy-bandwidth': number;
  'max-cpu-throttle': number;
  'multifd-compression': (typeof MULTIFD_COMPRESSIONS)[number];
  'multifd-zlib-level': number;
  'multifd-zstd-level': number;
  'x-vcpu-dirty-limit-period': number;
  'vcpu-dirty-limit': number;
  mode: (typeof MIG_MODES)[number];
  'zero-page-detection': (typeof ZERO_PAGE_DETECTIONS)[number];
  'direct-io': boolean;
  /**
   * Not QEMU's: milliseconds without progress after which a migration side gives up on its
   * peer (writes not draining, nothing arriving, a SHUT not coming); 0 waits forever, as QEMU
   * does. See stall-watchdog.ts.
   */
  'x-stall-timeout': number;
}

export type MigrationParameterName = keyof MigrationParameters;

/** QEMU's defaults (`migration_properties`). */
export const DEFAULT_MIGRATION_PARAMETERS: Readonly<MigrationParameters> = {
  'announce-initial': 50,
  'announce-max': 550,
  'announce-rounds': 5,
  'announce-step': 100,
  'throttle-trigger-threshold': 50,
  'cpu-throttle-initial': 20,
  'cpu-throttle-increment': 10,
  'cpu-throttle-tailslow': false,
  'tls-creds': '',
  'tls-hostname': '',
  'tls-authz': '',
  'max-bandwidth': 128 << 20,
  'avail-switchover-bandwidth': 0,
  'downtime-limit': 300,
  'x-checkpoint-delay': 200 * 100,
  'multifd-channels': 2,
  'xbzrle-cache-size': 64 << 20,
  'max-postcopy-bandwidth': 0,
  'max-cpu-throttle': 99,
  'multifd-compression': 'none',
  'multifd-zlib-level': 1,
  'multifd-zstd-level': 1,
  'x-vcpu-dirty-limit-period': 1000,
  'vcpu-dirty-limit': 1,
  mode: 'normal',
  'zero-page-detection': 'multifd',
  'direct-io': false,
  'x-stall-timeout': 30_000,
};

/** Largest x-stall-timeout: one day (ms), well inside what a timer can wait. */
export const MAX_STALL_TIMEOUT = 24 * 3600 * 1000;
/** Largest downtime-limit QEMU accepts: 2000 s. */
export const MAX_MIGRATE_DOWNTIME = 2000 * 1000;

type Kind =
  | { type: 'int'; qapi: 'uint8' | 'uint32' | 'uint64' | 'size'; max: number }
  | { type: 'bool' }
  | { type: 'str' }
  | { type: 'enum'; values: readonly string[] };

const u8: Kind = { type: 'int', qapi: 'uint8', max: 0xff };
const u32: Kind = { type: 'int', qapi: 'uint32', max: 0xffffffff };
/** u64 and size parameters are exact JavaScript integers, so they stop at 2^53 - 1. */
const u64: Kind = { type: 'int', qapi: 'uint64', max: Number.MAX_SAFE_INTEGER };
const size: Kind = { type: 'int', qapi: 'size', max: Number.MAX_SAFE_INTEGER };

const KINDS: Readonly<Record<MigrationParameterName, Kind>> = {
  'announce-initial': size,
  'announce-max': size,
  'announce-rounds': size,
  'announce-step': size,
  'throttle-trigger-threshold': u8,
  'cpu-throttle-initial': u8,
  'cpu-throttle-increment': u8,
  'cpu-throttle-tailslow': { type: 'bool' },
  'tls-creds': { type: 'str' },
  'tls-hostname': { type: 'str' },
  'tls-authz': { type: 'str' },
  'max-bandwidth': size,
  'avail-switchover-bandwidth': size,
  'downtime-limit': u64,
  'x-checkpoint-delay': u32,
  'multifd-channels': u8,
  'xbzrle-cache-size': size,
  'max-postcopy-bandwidth': size,
  'max-cpu-throttle': u8,
  'multifd-compression': { type: 'enum', values: MULTIFD_COMPRESSIONS },
  'multifd-zlib-level': u8,
  'multifd-zstd-level': u8,
  'x-vcpu-dirty-limit-period': u64,
  'vcpu-dirty-limit': u64,
  mode: { type: 'enum', values: MIG_MODES },
  'zero-page-detection': { type: 'enum', values: ZERO_PAGE_DETECTIONS },
  'direct-io': { type: 'bool' },
  'x-stall-timeout': u64,
};

export function isMigrationParameterName(name: string): name is MigrationParameterName {
  return Object.hasOwn(KINDS, name);
}

/** `QERR_INVALID_PARAMETER_VALUE`. */
function expects(name: string, what: string): string {
  return `Parameter '${name}' expects ${what}`;
}

/** The QAPI visitor's check of one value's type; returns QEMU's message or null. */
function typeProblem(name: MigrationParameterName, value: unknown): string | null {
  const kind = KINDS[name];
  switch (kind.type) {
    case 'int':
      if (typeof value !== 'number' || !Number.isInteger(value)) {
        return `Invalid parameter type for '${name}', expected: integer`;
      }
      return value < 0 || value > kind.max ? expects(name, kind.qapi) : null;
    case 'bool':
      return typeof value === 'boolean'
        ? null
        : `Invalid parameter type for '${name}', expected: boolean`;
    case 'str':
      return typeof value === 'string'
        ? null
        : `Invalid parameter type for '${name}', expected: string`;
    case 'enum':
      if (typeof value !== 'string') {
        return `Invalid parameter type for '${name}', expected: string`;
      }
      return kind.values.includes(value)
        ? null
        : `Parameter '${name}' does not accept value '${value}'`;
  }
}

const TLS_PARAMETERS: ReadonlySet<string> = new Set(['tls-creds', 'tls-hostname', 'tls-authz']);

const inRange = (v: number, lo: number, hi: number): boolean => v >= lo && v <= hi;

/** `migrate_params_check` on a complete set, in QEMU's order; the first problem or null. */
export function parametersProblem(p: MigrationParameters): string | null {
  const checks: [boolean, string][] = [
    [
      inRange(p['throttle-trigger-threshold'], 1, 100),
      expects('throttle_trigger_threshold', 'an integer in the range of 1 to 100'),
    ],
    [
      inRange(p['cpu-throttle-initial'], 1, 99),
      expects('cpu_throttle_initial', 'an integer in the range of 1 to 99'),
    ],
    [
      inRange(p['cpu-throttle-increment'], 1, 99),
      expects('cpu_throttle_increment', 'an integer in the range of 1 to 99'),
    ],
    [
      p['downtime-limit'] <= MAX_MIGRATE_DOWNTIME,
      expects('downtime_limit', `an integer in the range of 0 to ${MAX_MIGRATE_DOWNTIME} ms`),
    ],
    [p['multifd-channels'] >= 1, expects('multifd_channels', 'a value between 1 and 255')],
    [p['multifd-zlib-level'] <= 9, expects('multifd_zlib_level', 'a value between 0 and 9')],
    [p['multifd-zstd-level'] <= 20, expects('multifd_zstd_level', 'a value between 0 and 20')],
    [
      p['xbzrle-cache-size'] >= TARGET_PAGE_SIZE &&
        (p['xbzrle-cache-size'] & (p['xbzrle-cache-size'] - 1)) === 0,
      expects('xbzrle_cache_size', 'a power of two no less than the target page size'),
    ],
    [
      inRange(p['max-cpu-throttle'], p['cpu-throttle-initial'], 99),
      expects('max_cpu_throttle', 'an integer in the range of cpu_throttle_initial to 99'),
    ],
    [p['announce-initial'] <= 100000, expects('announce_initial', 'a value between 0 and 100000')],
    [p['announce-max'] <= 100000, expects('announce_max', 'a value between 0 and 100000')],
    [p['announce-rounds'] <= 1000, expects('announce_rounds', 'a value between 0 and 1000')],
    [
      inRange(p['announce-step'], 1, 10000),
      expects('announce_step', 'a value between 0 and 10000'),
    ],
    [
      inRange(p['x-vcpu-dirty-limit-period'], 1, 1000),
      expects('x-vcpu-dirty-limit-period', 'a value between 1 and 1000'),
    ],
    [p['vcpu-dirty-limit'] >= 1, "Parameter 'vcpu_dirty_limit' must be greater than 1 MB/s"],
    [
      p['x-stall-timeout'] <= MAX_STALL_TIMEOUT,
      expects('x-stall-timeout', `a value between 0 and ${MAX_STALL_TIMEOUT} ms`),
    ],
  ];
  for (const [ok, problem] of checks) if (!ok) return problem;
  return null;
}

/** What QEMU would accept but this implementation cannot do; the first such value or null. */
function unsupportedProblem(p: MigrationParameters): string | null {
  if (p['multifd-compression'] !== 'none') {
    return `multifd-compression '${p['multifd-compression']}' is not supported (only 'none')`;
  }
  if (p.mode !== 'normal') return `migration mode '${p.mode}' is not supported (only 'normal')`;
  return null;
}

/**
 * `migrate_params_test_apply` + `migrate_params_check`: `current` with `changes` applied, or
 * an Error with QEMU's message. Unknown names are refused as QMP would refuse them.
 */
export function applyParameters(
  current: Readonly<MigrationParameters>,
  changes: Readonly<Record<string, unknown>>,
): MigrationParameters {
  const next: MigrationParameters = { ...current };
  for (const [name, given] of Object.entries(changes)) {
    if (name === 'block-bitmap-mapping') {
      throw new Error("Parameter 'block-bitmap-mapping' is not supported (no block migration)");
    }
    if (!isMigrationParameterName(name)) throw new Error(`Parameter '${name}' is unexpected`);
    // The tls-* members are StrOrNull in MigrateSetParameters: null means "" (off).
    const value = given === null && TLS_PARAMETERS.has(name) ? '' : given;
    const problem = typeProblem(name, value);
    if (problem !== null) throw new Error(problem);
    (next as unknown as Record<string, unknown>)[name] = value;
  }
  const problem = parametersProblem(next) ?? unsupportedProblem(next);
  if (problem !== null) throw new Error(problem);
  return next;
}
