/**
 * Reading the properties of a user-creatable object the way QEMU's QAPI input visitors do,
 * with their messages (qapi/qobject-input-visitor.c): a missing member, a member of the wrong
 * type, an enum value it does not know, a member nobody asked for. Nested names are spelled
 * as QEMU spells them in errors: `rules[0].match`.
 *
 * Values come either from JSON (QMP `object-add`, the VM config) or from a `-object` string
 * (keyval), where every scalar is a string: with `keyval` set, booleans are also read from
 * QEMU's keyval spellings (on/off, yes/no, true/false).
 */

export class PropertyError extends Error {
  override readonly name = 'PropertyError';
}

const KEYVAL_TRUE = new Set(['on', 'yes', 'true']);
const KEYVAL_FALSE = new Set(['off', 'no', 'false']);

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Reads members of one struct; `done()` refuses the members nobody read. */
export class PropertyReader {
  readonly #props: Readonly<Record<string, unknown>>;
  readonly #prefix: string;
  readonly #keyval: boolean;
  readonly #read = new Set<string>();

  constructor(props: unknown, options: { prefix?: string; keyval?: boolean } = {}) {
    this.#prefix = options.prefix ?? '';
    this.#keyval = options.keyval ?? false;
    if (!isRecord(props)) {
      throw new PropertyError(
        `Invalid parameter type for '${this.#prefix || 'arguments'}', expected: object`,
      );
    }
    this.#props = props;
  }

  /** The full name of a member, for messages. */
  path(name: string): string {
    return this.#prefix === '' ? name : `${this.#prefix}.${name}`;
  }

  #take(name: string): unknown {
    this.#read.add(name);
    return Object.hasOwn(this.#props, name) ? this.#props[name] : undefined;
  }

  #missing(name: string): never {
    throw new PropertyError(`Parameter '${this.path(name)}' is missing`);
  }

  #wrongType(name: string, expected: string): never {
    throw new PropertyError(
      `Invalid parameter type for '${this.path(name)}', expected: ${expected}`,
    );
  }

  optionalString(name: string): string | undefined {
    const v = this.#take(name);
    if (v === undefined) return undefined;
    if (typeof v !== 'string') this.#wrongType(name, 'string');
    return v;
  }

  string(name: string): string {
    return this.optionalString(name) ?? this.#missing(name);
  }

  bool(name: string, fallback: boolean): boolean {
    const v = this.#take(name);
    if (v === undefined) return fallback;
    if (typeof v === 'boolean') return v;
    if (this.#keyval && typeof v === 'string') {
      if (KEYVAL_TRUE.has(v)) return true;
      if (KEYVAL_FALSE.has(v)) return false;
      throw new PropertyError(`Parameter '${this.path(name)}' expects 'on' or 'off'`);
    }
    return this.#wrongType(name, 'boolean');
  }

  enumValue<const T extends string>(name: string, values: readonly T[], fallback?: T): T {
    const v = this.#take(name);
    if (v === undefined) return fallback ?? this.#missing(name);
    if (typeof v !== 'string') this.#wrongType(name, 'string');
    if (!(values as readonly string[]).includes(v)) {
      throw new PropertyError(`Parameter '${this.path(name)}' does not accept value '${v}'`);
    }
    return v as T;
  }

  /**
   * A list of structs, each read by `item`. A keyval list (`rules.0.match=...`) arrives as an
   * object keyed by index and is read in index order; gaps are refused as QEMU refuses them.
   */
  list<T>(name: string, item: (reader: PropertyReader) => T, maxItems: number): T[] {
    const v = this.#take(name);
    if (v === undefined) return [];
    const path = this.path(name);
    const elements = Array.isArray(v)
      ? v
      : this.#keyval && isRecord(v)
        ? keyvalList(v, path)
        : null;
    if (elements === null) this.#wrongType(name, 'array');
    if (elements.length > maxItems) {
      throw new PropertyError(`Parameter '${path}' has more than ${maxItems} elements`);
    }
    return elements.map((e, i) => {
      const reader = new PropertyReader(e, {
        prefix: `${path}[${i}]`,
        keyval: this.#keyval,
      });
      const value = item(reader);
      reader.done();
      return value;
    });
  }

  /** Refuses members that were not read (QMP refuses unknown arguments). */
  done(): void {
    for (const name of Object.keys(this.#props)) {
      if (!this.#read.has(name)) {
        throw new PropertyError(`Parameter '${this.path(name)}' is unexpected`);
      }
    }
  }
}

/** `{ "0": a, "1": b }` → `[a, b]`: the indices must be exactly 0..n-1 (util/keyval.c). */
function keyvalList(v: Readonly<Record<string, unknown>>, path: string): unknown[] {
  return Object.keys(v).map((_, i) => {
    if (!Object.hasOwn(v, String(i))) throw new PropertyError(`Parameter '${path}.${i}' missing`);
    return v[String(i)];
  });
}
