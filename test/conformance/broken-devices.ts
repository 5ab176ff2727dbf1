/**
 * Devices broken in one precise way each: a simulated device behind a wrapper that changes
 * one behaviour. Each breakage names the conformance check that must catch it.
 */
import type { DataFd, DmaLogging, VfioMigrationDevice } from '../../src/device/device.ts';
import { createSimDevice } from '../../src/device/sim/index.ts';
import type { SimDevice } from '../../src/device/sim/index.ts';
import { MigState, VfioError, isVfioError } from '../../src/uapi/index.ts';
import type { IovaRange } from '../../src/uapi/index.ts';

type DeviceOverrides = Partial<Omit<VfioMigrationDevice, 'id' | 'dmaLogging'>> & {
  dmaLogging?: Partial<DmaLogging>;
};

/** The device with some calls replaced; everything else goes to the simulator. */
function override(inner: SimDevice, o: DeviceOverrides): VfioMigrationDevice {
  const log = inner.dmaLogging;
  return {
    id: inner.id,
    migrationFlags: o.migrationFlags ?? (() => inner.migrationFlags()),
    getState: o.getState ?? (() => inner.getState()),
    setState: o.setState ?? ((t) => inner.setState(t)),
    stopCopySize: o.stopCopySize ?? (() => inner.stopCopySize()),
    reset: o.reset ?? (() => inner.reset()),
    saveConfig: () => inner.saveConfig(),
    loadConfig: (b) => inner.loadConfig(b),
    stateDigest: () => inner.stateDigest(),
    close: o.close ?? (() => inner.close()),
    dmaLogging: {
      probe: o.dmaLogging?.probe ?? (() => log.probe()),
      start: o.dmaLogging?.start ?? ((r, p) => log.start(r, p)),
      stop: o.dmaLogging?.stop ?? (() => log.stop()),
      report: o.dmaLogging?.report ?? ((i, l, p, b) => log.report(i, l, p, b)),
    },
  };
}

/** A data fd with some calls replaced. */
function overrideFd(fd: DataFd, o: Partial<DataFd>): DataFd {
  return {
    kind: fd.kind,
    read: o.read ?? ((b) => fd.read(b)),
    write: o.write ?? ((b) => fd.write(b)),
    pread: o.pread ?? ((b, off) => fd.pread(b, off)),
    pwrite: o.pwrite ?? ((b, off) => fd.pwrite(b, off)),
    precopyInfo: o.precopyInfo ?? ((a, f) => fd.precopyInfo(a, f)),
    close: o.close ?? (() => fd.close()),
  };
}

/** setState whose returned fds are wrapped by `wrap`. */
function wrapFds(inner: SimDevice, wrap: (fd: DataFd) => DataFd) {
  return async (t: number) => {
    const fd = await inner.setState(t);
    return fd && wrap(fd);
  };
}

const swallow = (code: string) => (err: unknown) => {
  if (isVfioError(err) && err.code === code) return 0;
  throw err;
};

export interface Breakage {
  /** The check that must fail. */
  check: string;
  what: string;
  device(spec: string): Promise<VfioMigrationDevice>;
}

const sim = (spec: string, id = 'broken') => createSimDevice(spec, { id });
const broken = (
  check: string,
  what: string,
  make: (inner: SimDevice) => VfioMigrationDevice | Promise<VfioMigrationDevice>,
): Breakage => ({ check, what, device: async (spec) => make(sim(spec)) });

/** A driver that validates nothing it is given to resume. */
function acceptsAnything(inner: SimDevice): VfioMigrationDevice {
  const set = wrapFds(inner, (fd) =>
    overrideFd(fd, { write: (b) => fd.write(b).catch(() => b.length) }),
  );
  return override(inner, {
    async setState(t) {
      try {
        return await set(t);
      } catch (err) {
        if (t !== MigState.STOP || inner.state !== MigState.RESUMING) throw err;
        await inner.reset(); // forget the bad data and claim it loaded
        await inner.setState(MigState.STOP);
        return null;
      }
    },
  });
}

export const BREAKAGES: readonly Breakage[] = [
  broken('flags.defined', 'reports P2P without STOP_COPY', (d) =>
    override(d, { migrationFlags: () => Promise.resolve(2) }),
  ),
  broken('state.initial-running', 'opens in STOP', async (d) => {
    await d.setState(MigState.STOP);
    return d;
  }),
  broken('data-size.any-state', 'MIG_DATA_SIZE fails in STOP_COPY', (d) =>
    override(d, {
      stopCopySize: () =>
        d.state === MigState.STOP_COPY
          ? Promise.reject(new VfioError('EIO', 'broken'))
          : d.stopCopySize(),
    }),
  ),
  broken('set.paths', 'cannot go from STOP_COPY back to RUNNING', (d) =>
    override(d, {
      setState: (t) =>
        d.state === MigState.STOP_COPY && t === MigState.RUNNING
          ? Promise.reject(new VfioError('EINVAL', 'broken'))
          : d.setState(t),
    }),
  ),
  broken('set.noop', 'SET to the current state reopens a session', (d) =>
    override(d, {
      setState: async (t) => {
        const fd = await d.setState(t);
        if (fd || t !== d.state || t === MigState.RUNNING) return fd;
        return { kind: 'saving' } as DataFd; // a bogus new session
      },
    }),
  ),
  broken('set.invalid', 'accepts state numbers >= 8', (d) =>
    override(d, { setState: (t) => (t >= 8 ? Promise.resolve(null) : d.setState(t)) }),
  ),
  broken('set.blocked-arc', 'spins on STOP_COPY -> PRE_COPY like an unfixed kernel', (d) => {
    d.faults.legacyHang(true);
    return d;
  }),
  broken('set.serialized', 'runs concurrent SETs in any order', (d) => {
    let calls = 0;
    return override(d, {
      setState: async (t) => {
        const delay = 40 - 10 * calls++;
        await new Promise((r) => setTimeout(r, Math.max(delay, 0)));
        return d.setState(t);
      },
    });
  }),
  broken('session.ends-on-exit', 'old fds keep answering after their session ended', (d) =>
    override(d, {
      setState: wrapFds(d, (fd) =>
        overrideFd(fd, {
          read: (b) => fd.read(b).catch(swallow('ENODEV')),
          write: (b) => fd.write(b).catch(swallow('ENODEV')),
        }),
      ),
    }),
  ),
  broken('session.saving-group-keeps-fd', 'PRE_COPY -> STOP_COPY hands out the fd again', (d) => {
    let last: DataFd | null = null;
    return override(d, {
      setState: async (t) => {
        const fd = await d.setState(t);
        if (fd) last = fd;
        return t === MigState.STOP_COPY ? (fd ?? last) : fd;
      },
    });
  }),
  broken('session.stream-file', 'pread reads like read', (d) =>
    override(d, { setState: wrapFds(d, (fd) => overrideFd(fd, { pread: (b) => fd.read(b) })) }),
  ),
  broken('session.close-keeps-state', 'closing the fd aborts the migration state', (d) =>
    override(d, {
      setState: wrapFds(d, (fd) =>
        overrideFd(fd, {
          close: () => {
            fd.close();
            void d.reset();
          },
        }),
      ),
    }),
  ),
  broken('reset.from-every-state', 'reset is ignored in RESUMING', (d) =>
    override(d, { reset: () => (d.state === MigState.RESUMING ? Promise.resolve() : d.reset()) }),
  ),
  broken('close.ends-sessions', 'closing the device leaves its sessions open', (d) =>
    override(d, { close: () => Promise.resolve() }),
  ),
  broken('stop-copy.eof', 'ENOMSG at the end of STOP_COPY', (d) =>
    override(d, {
      setState: wrapFds(d, (fd) =>
        overrideFd(fd, {
          read: async (b) => {
            const n = await fd.read(b);
            if (n === 0) throw new VfioError('ENOMSG', 'broken');
            return n;
          },
        }),
      ),
    }),
  ),
  broken('pre-copy.enomsg', 'returns 0 at a temporary end (the kernel mtty sample quirk)', (d) =>
    override(d, {
      setState: wrapFds(d, (fd) =>
        overrideFd(fd, { read: (b) => fd.read(b).catch(swallow('ENOMSG')) }),
      ),
    }),
  ),
  broken('precopy-info.refusals', 'PRECOPY_INFO ignores argsz', (d) =>
    override(d, {
      setState: wrapFds(d, (fd) =>
        overrideFd(fd, { precopyInfo: (_a, f) => fd.precopyInfo(24, f) }),
      ),
    }),
  ),
  broken('precopy-info.initial-bytes', 'initial_bytes creeps up', (d) => {
    let extra = 0;
    return override(d, {
      setState: wrapFds(d, (fd) =>
        overrideFd(fd, {
          precopyInfo: async (a, f) => {
            const info = await fd.precopyInfo(a, f);
            return info.initialBytes > 0
              ? { ...info, initialBytes: info.initialBytes + ++extra }
              : info;
          },
        }),
      ),
    });
  }),
  broken('resume.round-trip', 'loses the last byte of every write', (d) =>
    override(d, {
      setState: wrapFds(d, (fd) =>
        overrideFd(fd, {
          write: async (b) => {
            if (b.length > 1) await fd.write(b.subarray(0, b.length - 1));
            return b.length;
          },
        }),
      ),
    }),
  ),
  broken('resume.truncated', 'accepts whatever it is given', acceptsAnything),
  broken('resume.corrupted-header', 'accepts whatever it is given', acceptsAnything),
  broken('resume.overlong', 'accepts whatever it is given', acceptsAnything),
  broken('resume.empty', 'accepts whatever it is given', acceptsAnything),
  broken('dma-logging.start-refusals', 'silently drops ranges past 256', (d) =>
    override(d, {
      dmaLogging: {
        start: (r: readonly IovaRange[], p: bigint) => d.dmaLogging.start(r.slice(0, 256), p),
      },
    }),
  ),
  broken('dma-logging.start-stop', 'restarts logging on a second START', (d) =>
    override(d, {
      dmaLogging: {
        start: async (r: readonly IovaRange[], p: bigint) => {
          await d.dmaLogging.stop();
          return d.dmaLogging.start(r, p);
        },
      },
    }),
  ),
  broken('dma-logging.report', 'clears the caller bitmap before reporting', (d) =>
    override(d, {
      dmaLogging: {
        report: (i: bigint, l: bigint, p: bigint, b: Uint8Array) => {
          b.fill(0);
          return d.dmaLogging.report(i, l, p, b);
        },
      },
    }),
  ),
];
