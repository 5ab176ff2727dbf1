/**
 * Migration URIs as QEMU spells them: `tcp:HOST:PORT` (IPv6 literals in brackets, an empty
 * host listens on loopback (index.ts), port 0 picks a free port when listening), `unix:PATH`, and
 * `file:PATH[,offset=N]` (a plain stream in a file: no return path).
 */
import { isIPv6 } from 'node:net';

export type MigrationUri =
  | { transport: 'tcp'; host: string; port: number }
  | { transport: 'unix'; path: string }
  | { transport: 'file'; path: string; offset: number };

export class MigrationUriError extends Error {
  override readonly name = 'MigrationUriError';
  readonly uri: string;

  constructor(uri: string, problem: string) {
    super(`invalid migration URI '${uri}': ${problem}`);
    this.uri = uri;
  }
}

/** `sun_path` is 108 bytes including the terminating NUL. */
export const UNIX_PATH_MAX = 107;

const UNSUPPORTED = ['exec', 'fd', 'rdma', 'vsock', 'channels'];

export function parseMigrationUri(uri: string): MigrationUri {
  const colon = uri.indexOf(':');
  const scheme = uri.slice(0, Math.max(colon, 0));
  if (!/^[a-z]+$/.test(scheme)) throw new MigrationUriError(uri, 'expected tcp:, unix: or file:');
  const rest = uri.slice(colon + 1);
  switch (scheme) {
    case 'tcp':
      return parseTcp(uri, rest);
    case 'unix':
      if (rest === '') throw new MigrationUriError(uri, 'empty socket path');
      if (Buffer.byteLength(rest) > UNIX_PATH_MAX) {
        throw new MigrationUriError(uri, `socket path longer than ${UNIX_PATH_MAX} bytes`);
      }
      return { transport: 'unix', path: rest };
    case 'file':
      return parseFile(uri, rest);
    default:
      if (UNSUPPORTED.includes(scheme)) {
        throw new MigrationUriError(uri, `the ${scheme}: transport is not supported`);
      }
      throw new MigrationUriError(uri, `unknown transport '${scheme}'`);
  }
}

function parseTcp(uri: string, rest: string): MigrationUri {
  if (rest.includes(',')) throw new MigrationUriError(uri, 'tcp options are not supported');
  let host: string;
  let portText: string;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0) throw new MigrationUriError(uri, "missing ']' after the IPv6 address");
    host = rest.slice(1, close);
    if (!isIPv6(host)) throw new MigrationUriError(uri, `'${host}' is not an IPv6 address`);
    if (rest[close + 1] !== ':') throw new MigrationUriError(uri, "expected ':PORT' after ']'");
    portText = rest.slice(close + 2);
  } else {
    const sep = rest.lastIndexOf(':');
    if (sep < 0) throw new MigrationUriError(uri, 'expected tcp:HOST:PORT');
    host = rest.slice(0, sep);
    if (host.includes(':')) {
      throw new MigrationUriError(uri, 'an IPv6 address must be written in brackets');
    }
    portText = rest.slice(sep + 1);
  }
  if (!/^[0-9]{1,5}$/.test(portText) || Number(portText) > 65535) {
    throw new MigrationUriError(uri, `port '${portText}' is not a number in 0..65535`);
  }
  return { transport: 'tcp', host, port: Number(portText) };
}

function parseFile(uri: string, rest: string): MigrationUri {
  let path = rest;
  let offset = 0;
  const opt = rest.lastIndexOf(',offset=');
  if (opt >= 0) {
    path = rest.slice(0, opt);
    const text = rest.slice(opt + ',offset='.length);
    offset = /^(0x[0-9a-f]+|[0-9]+)$/i.test(text) ? Number(text) : NaN;
    if (!Number.isSafeInteger(offset)) {
      throw new MigrationUriError(uri, `offset '${text}' is not a byte count`);
    }
  }
  if (path === '') throw new MigrationUriError(uri, 'empty file path');
  return { transport: 'file', path, offset };
}

export function formatMigrationUri(u: MigrationUri): string {
  switch (u.transport) {
    case 'tcp':
      return `tcp:${isIPv6(u.host) ? `[${u.host}]` : u.host}:${u.port}`;
    case 'unix':
      return `unix:${u.path}`;
    case 'file':
      return u.offset === 0 ? `file:${u.path}` : `file:${u.path},offset=${u.offset}`;
  }
}

export function toMigrationUri(uri: string | MigrationUri): MigrationUri {
  return typeof uri === 'string' ? parseMigrationUri(uri) : uri;
}
