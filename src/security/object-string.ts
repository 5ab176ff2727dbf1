/**
 * The `-object` command-line syntax (QEMU's keyval, util/keyval.c), so a configuration can
 * spell objects exactly as a QEMU command line does:
 *
 *   tls-creds-x509,id=tls0,dir=/etc/pki/qemu,endpoint=server,verify-peer=on
 *   authz-list,id=auth0,policy=deny,rules.0.match=CN=source,,O=Example,rules.0.policy=allow
 *
 * The first element without '=' is the implied key `qom-type`. A value runs to the next single
 * comma; ",," is a literal comma (a distinguished name needs it). Dotted keys build nested
 * structs and lists (`rules.0.match`). Every value is a string; the object's reader converts
 * (see properties.ts). Sizes are bounded before anything is built.
 */
import { PropertyError } from './properties.ts';

/** Longest accepted `-object` string, and most key=value pairs in it. */
export const OBJECT_STRING_MAX = 64 << 10;
export const OBJECT_STRING_MAX_PAIRS = 1024;

const KEY_FRAGMENT = /^[A-Za-z0-9_-]+$/;

type Tree = { [key: string]: string | Tree };

/** Splits at single commas; ",," is a comma inside the value. */
function splitPairs(text: string): string[] {
  const parts: string[] = [];
  let current = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c !== ',') {
      current += c;
    } else if (text[i + 1] === ',') {
      current += ',';
      i++;
    } else {
      parts.push(current);
      current = '';
      if (parts.length > OBJECT_STRING_MAX_PAIRS) {
        throw new PropertyError(`more than ${OBJECT_STRING_MAX_PAIRS} parameters`);
      }
    }
  }
  parts.push(current);
  return parts;
}

function put(tree: Tree, key: string, value: string): void {
  const fragments = key.split('.');
  for (const f of fragments) {
    if (!KEY_FRAGMENT.test(f)) throw new PropertyError(`Invalid parameter '${key}'`);
  }
  let node = tree;
  fragments.forEach((f, i) => {
    const last = i === fragments.length - 1;
    const prefix = fragments.slice(0, i + 1).join('.');
    const existing = node[f];
    if (last) {
      if (existing !== undefined) {
        throw new PropertyError(
          typeof existing === 'string'
            ? `Parameter '${prefix}' is set twice`
            : `Parameter '${prefix}' used inconsistently`,
        );
      }
      node[f] = value;
      return;
    }
    if (typeof existing === 'string') {
      throw new PropertyError(`Parameter '${prefix}' used inconsistently`);
    }
    node = existing ?? (node[f] = {});
  });
}

/** `-object TYPE,key=value,...` as the nested object QMP `object-add` would receive. */
export function parseObjectString(text: string): Record<string, unknown> {
  if (text.length > OBJECT_STRING_MAX) {
    throw new PropertyError(`object string longer than ${OBJECT_STRING_MAX} characters`);
  }
  const tree: Tree = {};
  if (text === '') return tree;
  splitPairs(text).forEach((pair, i) => {
    const eq = pair.indexOf('=');
    if (eq < 0) {
      if (i === 0 && pair !== '') put(tree, 'qom-type', pair);
      else throw new PropertyError(`Expected '=' after parameter '${pair}'`);
      return;
    }
    put(tree, pair.slice(0, eq), pair.slice(eq + 1));
  });
  return tree;
}
