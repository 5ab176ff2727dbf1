/**
 * QMP endpoints in QEMU's `-qmp` spelling: `unix:PATH` or `tcp:HOST:PORT` (IPv6 hosts in
 * brackets, `tcp:[::1]:4444`). QEMU's `,server=on,wait=off` style options are accepted and
 * ignored, since this side always listens and never waits.
 */

export type QmpAddress =
  | { readonly kind: 'unix'; readonly path: string }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number };

/** Linux `sun_path` holds 108 bytes including the terminating NUL. */
export const UNIX_PATH_MAX = 107;

const IGNORED_OPTIONS = new Set(['server', 'server=on', 'wait=off', 'nowait']);

export function parseQmpAddress(spec: string): QmpAddress {
  const parts = spec.split(',');
  const main = parts[0] ?? '';
  for (const opt of parts.slice(1)) {
    if (!IGNORED_OPTIONS.has(opt)) {
      throw new Error(`QMP address '${spec}': unsupported option '${opt}'`);
    }
  }
  if (main.startsWith('unix:')) {
    const path = main.slice('unix:'.length);
    if (path === '') throw new Error(`QMP address '${spec}': empty socket path`);
    if (Buffer.byteLength(path) > UNIX_PATH_MAX) {
      throw new Error(`QMP address '${spec}': socket path longer than ${UNIX_PATH_MAX} bytes`);
    }
    return { kind: 'unix', path };
  }
  if (main.startsWith('tcp:')) {
    const rest = main.slice('tcp:'.length);
    const colon = rest.lastIndexOf(':');
    if (colon < 0) throw new Error(`QMP address '${spec}': expected tcp:HOST:PORT`);
    let host = rest.slice(0, colon);
    const portText = rest.slice(colon + 1);
    if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
    else if (host.includes(':')) {
      throw new Error(`QMP address '${spec}': an IPv6 host needs brackets, e.g. tcp:[::1]:4444`);
    }
    if (host === '') throw new Error(`QMP address '${spec}': empty host`);
    const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
    if (!(port >= 0 && port <= 65535)) {
      throw new Error(`QMP address '${spec}': port must be 0..65535, got '${portText}'`);
    }
    return { kind: 'tcp', host, port };
  }
  throw new Error(`QMP address '${spec}': expected unix:PATH or tcp:HOST:PORT`);
}

export function formatQmpAddress(address: QmpAddress): string {
  if (address.kind === 'unix') return `unix:${address.path}`;
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  return `tcp:${host}:${address.port}`;
}

export function toQmpAddress(address: string | QmpAddress): QmpAddress {
  return typeof address === 'string' ? parseQmpAddress(address) : address;
}
