/**
 * An independent reference for the uAPI contract, built only from the kernel's recorded
 * behaviour (test/fixtures/vfio-uapi-table.json: derived full paths, fd-creating and
 * fd-terminating arcs) — not from src/uapi — so the property tests compare two
 * implementations instead of one with itself. It predicts the *category* of each outcome
 * (errno, fd or not, data/ENOMSG/EOF); byte counts are the device's business.
 */
import { readJsonFixture } from '../../helpers/repo.ts';

interface Table {
  state_values: Record<string, number>;
  fd_creating_arcs: string[];
  fd_terminating_arcs: string[];
  derived: Record<
    string,
    { flags_value: number; full_paths: Record<string, Record<string, string | { path: string[] }>> }
  >;
}

const table = readJsonFixture<Table>('vfio-uapi-table.json');
const NAMES = Object.entries(table.state_values)
  .sort((a, b) => a[1] - b[1])
  .map(([n]) => n);

export const stateNameOf = (v: number): string => NAMES[v] ?? `INVALID(${v})`;
export const stateValueOf = (n: string): number => table.state_values[n]!;

function derivedFor(flags: number) {
  const d = Object.values(table.derived).find((x) => x.flags_value === flags);
  if (!d) throw new Error(`no derived table for flags ${flags}`);
  return d;
}

export interface RefSession {
  kind: 'saving' | 'resuming';
  alive: boolean;
  /** close(2) was called by the user. */
  closed: boolean;
  /** A STOP_COPY read returned 0: the end, forever. */
  sawEof: boolean;
  /** Last initial_bytes seen through PRECOPY_INFO in this session. */
  lastInitial: number;
  /** Resuming: bytes of the valid stream written so far. */
  written: number;
}

export type SetPrediction =
  { ok: true; fd: 'saving' | 'resuming' | null; path: string[] } | { ok: false; errno: 'EINVAL' };

export class ReferenceDevice {
  state = 'RUNNING';
  readonly sessions: RefSession[] = [];
  logging = false;
  readonly flags: number;
  /** Length of the valid stream the test writes into resuming sessions. */
  readonly streamLength: number;
  private readonly paths: Record<string, Record<string, string | { path: string[] }>>;

  constructor(flags: number, streamLength: number) {
    this.flags = flags;
    this.streamLength = streamLength;
    this.paths = derivedFor(flags).full_paths;
  }

  get current(): RefSession | undefined {
    return this.sessions.find((s) => s.alive);
  }

  /** What SET(target) must do, and the model's new state when it succeeds. */
  set(target: number): SetPrediction {
    const to = stateNameOf(target);
    const entry = target >= 0 && target < 8 ? this.paths[this.state]?.[to] : 'EINVAL';
    if (
      entry === undefined ||
      entry === 'EINVAL' ||
      (typeof entry === 'string' && !entry.startsWith('NOOP'))
    ) {
      return { ok: false, errno: 'EINVAL' };
    }
    if (typeof entry === 'string') return { ok: true, fd: null, path: [this.state] };
    const path = entry.path;
    // RESUMING -> STOP validates what was written: an incomplete stream fails the first arc.
    if (path[0] === 'RESUMING') {
      const s = this.current;
      if (!s || s.written !== this.streamLength) return { ok: false, errno: 'EINVAL' };
    }
    let fd: 'saving' | 'resuming' | null = null;
    for (let i = 1; i < path.length; i++) {
      const arc = `${path[i - 1]}->${path[i]}`;
      if (table.fd_terminating_arcs.includes(arc)) this.kill();
      if (table.fd_creating_arcs.includes(arc)) {
        fd = path[i] === 'RESUMING' ? 'resuming' : 'saving';
        this.sessions.push({
          kind: fd,
          alive: true,
          closed: false,
          sawEof: false,
          lastInitial: Number.POSITIVE_INFINITY,
          written: 0,
        });
      }
    }
    this.state = to;
    return { ok: true, fd, path };
  }

  reset(): void {
    this.kill();
    this.logging = false;
    this.state = 'RUNNING';
  }

  private kill(): void {
    for (const s of this.sessions) s.alive = false;
  }

  /** Expected errno of read(), or 'data' (PRE_COPY: bytes or ENOMSG; STOP_COPY: bytes or 0). */
  read(s: RefSession): 'EBADF' | 'ENODEV' | 'precopy' | 'stopcopy' {
    if (s.closed || s.kind === 'resuming') return 'EBADF';
    if (!s.alive) return 'ENODEV';
    return this.state === 'STOP_COPY' ? 'stopcopy' : 'precopy';
  }

  write(s: RefSession): 'EBADF' | 'ENODEV' | 'ok' {
    if (s.closed || s.kind === 'saving') return 'EBADF';
    if (!s.alive) return 'ENODEV';
    return 'ok';
  }

  /** The order of §6.2: fd validity, ioctl support, argsz, device state, session. */
  precopyInfo(s: RefSession, argsz: number): 'EBADF' | 'ENOTTY' | 'EINVAL' | 'ENODEV' | 'ok' {
    if (s.closed) return 'EBADF';
    if (s.kind === 'resuming') return 'ENOTTY';
    if (argsz < 24) return 'EINVAL';
    if (this.state !== 'PRE_COPY' && this.state !== 'PRE_COPY_P2P') return 'EINVAL';
    if (!s.alive) return 'ENODEV';
    return 'ok';
  }

  pread(s: RefSession): 'EBADF' | 'ESPIPE' {
    return s.closed ? 'EBADF' : 'ESPIPE';
  }
}
