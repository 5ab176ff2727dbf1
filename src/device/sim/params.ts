/**
 * Parameter tables for the simulated devices. Each model declares its parameters once, in a
 * table of `ParamDef`s; the `sim:MODEL,key=value` parser and the help text both read it.
 */
import { flagsName, parseFlags } from '../../uapi/index.ts';
import type { MigrationFlags } from '../../uapi/index.ts';

export interface ParamDef<T> {
  /** One line for `--help`. */
  readonly help: string;
  /** The value used when the key is absent, in the spelling a user would write. */
  readonly default: string;
  /** What the parser accepts, quoted in errors and help, e.g. "a size 4K..1G". */
  readonly accepts: string;
  /** Parses a value; throws an Error saying what is wrong (the key is added by the caller). */
  parse(text: string): T;
}

/** A model's parameter object `P` described key by key. */
export type ParamTable<P> = { readonly [K in keyof P]: ParamDef<P[K]> };

export interface ParamHelp {
  key: string;
  default: string;
  accepts: string;
  help: string;
}

/** Parses `given` (key -> text) against `table`; unknown keys and bad values name the key. */
export function parseParams<P extends object>(
  table: ParamTable<P>,
  given: ReadonlyMap<string, string>,
  where: string,
): P {
  const keys = Object.keys(table) as (keyof P & string)[];
  for (const key of given.keys()) {
    if (!keys.includes(key as keyof P & string)) {
      throw new Error(`${where}: unknown parameter "${key}" (accepted: ${keys.join(', ')})`);
    }
  }
  const out = {} as P;
  for (const key of keys) {
    const def: ParamDef<P[typeof key]> = table[key];
    const text = given.get(key) ?? def.default;
    try {
      out[key] = def.parse(text);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new Error(
        `${where}: bad value "${text}" for ${key}: ${why} (accepted: ${def.accepts})`,
        { cause: err },
      );
    }
  }
  return out;
}

export function describeParams<P extends object>(table: ParamTable<P>): ParamHelp[] {
  return (Object.keys(table) as (keyof P & string)[]).map((key) => {
    const def: ParamDef<P[typeof key]> = table[key];
    return { key, default: def.default, accepts: def.accepts, help: def.help };
  });
}

const SUFFIX: Record<string, number> = { '': 1, K: 1 << 10, M: 1 << 20, G: 1 << 30 };

/** "64K" -> 65536. Binary suffixes K, M, G; plain digits are bytes. */
export function parseSize(text: string): number {
  const m = /^(\d+)([KMG]?)$/i.exec(text.trim());
  if (!m) throw new Error('not a size (digits with an optional K, M or G suffix)');
  const value = Number(m[1]) * SUFFIX[m[2]!.toUpperCase()]!;
  if (!Number.isSafeInteger(value)) throw new Error('size too large');
  return value;
}

export function formatSize(bytes: number): string {
  for (const [suffix, unit] of [
    ['G', 1 << 30],
    ['M', 1 << 20],
    ['K', 1 << 10],
  ] as const) {
    if (bytes >= unit && bytes % unit === 0) return `${bytes / unit}${suffix}`;
  }
  return String(bytes);
}

export function sizeParam(
  help: string,
  def: string,
  min: number,
  max: number,
  opts: { multipleOf?: number } = {},
): ParamDef<number> {
  const step = opts.multipleOf;
  const accepts =
    `a size ${formatSize(min)}..${formatSize(max)} (suffix K, M, G)` +
    (step ? `, a multiple of ${formatSize(step)}` : '');
  return {
    help,
    default: def,
    accepts,
    parse(text) {
      const v = parseSize(text);
      if (v < min || v > max) throw new Error('out of range');
      if (step && v % step !== 0) throw new Error(`not a multiple of ${formatSize(step)}`);
      return v;
    },
  };
}

export function intParam(help: string, def: string, min: number, max: number): ParamDef<number> {
  return {
    help,
    default: def,
    accepts: `an integer ${min}..${max}`,
    parse(text) {
      if (!/^\d+$/.test(text.trim())) throw new Error('not a decimal integer');
      const v = Number(text);
      if (v < min || v > max) throw new Error('out of range');
      return v;
    },
  };
}

export function choiceParam<const T extends string>(
  help: string,
  def: T,
  values: readonly T[],
): ParamDef<T> {
  return {
    help,
    default: def,
    accepts: values.join(' | '),
    parse(text) {
      const v = values.find((x) => x === text.trim().toLowerCase());
      if (v === undefined) throw new Error('not one of the accepted values');
      return v;
    },
  };
}

export function onOffParam(help: string, def: 'on' | 'off'): ParamDef<boolean> {
  const choice = choiceParam(help, def, ['on', 'off']);
  return { ...choice, parse: (text) => choice.parse(text) === 'on' };
}

/** Migration flags joined with `+` (or `|`), e.g. `stop-copy+p2p+pre-copy`. */
export function flagsParam(help: string, def: MigrationFlags): ParamDef<MigrationFlags> {
  return {
    help,
    default: flagsName(def).toLowerCase().replaceAll('_', '-').replaceAll('|', '+'),
    accepts: 'stop-copy[+p2p][+pre-copy] (stop-copy is mandatory)',
    parse: (text) => parseFlags(text),
  };
}
