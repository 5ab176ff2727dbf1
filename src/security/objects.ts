/**
 * User-creatable objects (QEMU's `-object` / `object-add` / `object-del`, qom/object_interfaces.c)
 * of the kinds migration security needs: `tls-creds-x509`, `authz-simple`, `authz-list`. They
 * live in one container per VM (QEMU's /objects) and are found by id: migration parameters
 * `tls-creds` and `tls-authz` name them.
 *
 * Properties are read as QEMU's QAPI schema declares them (TlsCredsX509Properties,
 * AuthZSimpleProperties, AuthZListProperties), from JSON or from a `-object` string.
 */
import { QAUTHZ_LIST_FORMATS, QAUTHZ_LIST_MAX_RULES, QAUTHZ_LIST_POLICIES } from './authz.ts';
import { QAuthZList, QAuthZSimple } from './authz.ts';
import type { QAuthZ, QAuthZListRule } from './authz.ts';
import { parseObjectString } from './object-string.ts';
import { PropertyError, PropertyReader } from './properties.ts';
import { TLS_CREDS_ENDPOINTS, TlsCredsX509 } from './tls-creds-x509.ts';
import type { TlsCredsX509Options } from './tls-creds-x509.ts';

export const USER_OBJECT_TYPES = ['tls-creds-x509', 'authz-simple', 'authz-list'] as const;
export type UserObjectType = (typeof USER_OBJECT_TYPES)[number];

/** The properties of each type that QEMU has and this implementation refuses. */
const UNSUPPORTED: Readonly<Record<string, string>> = {
  priority: 'GnuTLS priority strings are not supported (sessions use TLS 1.2 or 1.3)',
  passwordid: 'encrypted private keys (passwordid) are not supported',
};

/** Every property name any supported type takes (for a QMP argument schema). */
export const USER_OBJECT_PROPERTIES = [
  'dir',
  'endpoint',
  'verify-peer',
  'sanity-check',
  'priority',
  'passwordid',
  'identity',
  'policy',
  'rules',
] as const;

export type ObjectOptions =
  | ({ readonly 'qom-type': 'tls-creds-x509' } & TlsCredsX509Options)
  | { readonly 'qom-type': 'authz-simple'; readonly id: string; readonly identity: string }
  | {
      readonly 'qom-type': 'authz-list';
      readonly id: string;
      readonly policy: (typeof QAUTHZ_LIST_POLICIES)[number];
      readonly rules: readonly QAuthZListRule[];
    };

export type UserObject = TlsCredsX509 | QAuthZ;

/** QEMU's `id_wellformed`: a letter, then letters, digits, '-', '.', '_'. */
const ID = /^[A-Za-z][A-Za-z0-9._-]*$/;
/** Longest object id accepted (QEMU has no limit; ids are names, not data). */
export const OBJECT_ID_MAX = 128;

function refuseUnsupported(r: PropertyReader): void {
  for (const [name, why] of Object.entries(UNSUPPORTED)) {
    if (r.optionalString(name) !== undefined) {
      throw new PropertyError(`Parameter '${name}' is not supported: ${why}`);
    }
  }
}

function readRule(r: PropertyReader): QAuthZListRule {
  return {
    match: r.string('match'),
    policy: r.enumValue('policy', QAUTHZ_LIST_POLICIES),
    format: r.enumValue('format', QAUTHZ_LIST_FORMATS, 'exact'),
  };
}

/**
 * Validates an object's options (a JSON object, or a `-object` string) without creating it:
 * the VM config checks its `objects` with this, `object-add` then creates.
 */
export function parseObjectOptions(spec: unknown): ObjectOptions {
  const keyval = typeof spec === 'string';
  const r = new PropertyReader(keyval ? parseObjectString(spec) : spec, { keyval });
  const type = r.string('qom-type');
  if (!(USER_OBJECT_TYPES as readonly string[]).includes(type)) {
    throw new PropertyError(
      `Parameter 'qom-type' does not accept value '${type}' ` +
        `(supported: ${USER_OBJECT_TYPES.join(', ')})`,
    );
  }
  const id = r.string('id');
  if (!ID.test(id) || id.length > OBJECT_ID_MAX) {
    throw new PropertyError("Parameter 'id' expects an identifier");
  }
  let options: ObjectOptions;
  switch (type as UserObjectType) {
    case 'tls-creds-x509':
      refuseUnsupported(r);
      options = {
        'qom-type': 'tls-creds-x509',
        id,
        dir: r.optionalString('dir'),
        endpoint: r.enumValue('endpoint', TLS_CREDS_ENDPOINTS, 'client'),
        verifyPeer: r.bool('verify-peer', true),
        sanityCheck: r.bool('sanity-check', true),
      };
      break;
    case 'authz-simple':
      options = { 'qom-type': 'authz-simple', id, identity: r.string('identity') };
      break;
    case 'authz-list':
      options = {
        'qom-type': 'authz-list',
        id,
        policy: r.enumValue('policy', QAUTHZ_LIST_POLICIES, 'deny'),
        rules: r.list('rules', readRule, QAUTHZ_LIST_MAX_RULES),
      };
      break;
  }
  r.done();
  return options;
}

/** `user_creatable_complete`: builds the object (loading files for credentials). */
function createObject(o: ObjectOptions): UserObject {
  switch (o['qom-type']) {
    case 'tls-creds-x509':
      return TlsCredsX509.load(o);
    case 'authz-simple':
      return new QAuthZSimple(o.id, o.identity);
    case 'authz-list':
      return new QAuthZList(o.id, o.policy, o.rules);
  }
}

export function isTlsCreds(o: UserObject | undefined): o is TlsCredsX509 {
  return o instanceof TlsCredsX509;
}

function isAuthz(o: UserObject | undefined): o is QAuthZ {
  return o instanceof QAuthZSimple || o instanceof QAuthZList;
}

/** The /objects container of one VM. */
export class UserObjects {
  readonly #objects = new Map<string, UserObject>();

  /**
   * The objects of a command line or a config (`user_creatable_process_cmdline`), in order;
   * an error names the entry it comes from.
   */
  static create(specs: readonly unknown[], where = 'objects'): UserObjects {
    const objects = new UserObjects();
    specs.forEach((spec, i) => {
      try {
        objects.add(spec);
      } catch (err) {
        throw new Error(`${where}[${i}]: ${err instanceof Error ? err.message : String(err)}`, {
          cause: err,
        });
      }
    });
    return objects;
  }

  /** `object-add` / `-object`: validates, creates, adds; throws with QEMU's messages. */
  add(spec: unknown): UserObject {
    const options = parseObjectOptions(spec);
    if (this.#objects.has(options.id)) {
      throw new Error(
        `attempt to add duplicate property '${options.id}' to object (type 'container')`,
      );
    }
    const object = createObject(options);
    this.#objects.set(options.id, object);
    return object;
  }

  /** `object-del`. A session already using the object keeps it until it ends, as in QEMU. */
  del(id: string): void {
    if (!this.#objects.delete(id)) throw new Error(`object '${id}' not found`);
  }

  get(id: string): UserObject | undefined {
    return this.#objects.get(id);
  }

  /** Every object, in creation order. */
  list(): UserObject[] {
    return [...this.#objects.values()];
  }

  /** `qauthz_is_allowed_by_id` (authz/base.c). */
  isAllowedById(authzId: string, identity: string): boolean {
    const o = this.#objects.get(authzId);
    if (o === undefined) throw new Error(`Cannot find QAuthZ object ID ${authzId}`);
    if (!isAuthz(o)) throw new Error(`Object '${authzId}' is not a QAuthZ subclass`);
    return o.isAllowed(identity);
  }
}
