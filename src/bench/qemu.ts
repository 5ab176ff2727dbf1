/**
 * QEMU for the comparison: `qemu-system-x86_64` found on $PATH (or $QEMU_SYSTEM_X86_64),
 * started with a QMP UNIX socket in the benchmark's directory and driven with our QMP client.
 * The benchmark installs nothing: without QEMU the comparison is skipped.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { incomingUri } from '../cli/incoming.ts';
import { QmpClient } from '../qmp/index.ts';
import type { MigrationPair } from './pair.ts';

export const QEMU_BINARY = 'qemu-system-x86_64';

/** $QEMU_SYSTEM_X86_64, or the first qemu-system-x86_64 on $PATH; null when there is none. */
export function findQemu(): string | null {
  const candidates = [
    process.env.QEMU_SYSTEM_X86_64,
    ...(process.env.PATH ?? '').split(delimiter).map((d) => join(d, QEMU_BINARY)),
  ];
  for (const c of candidates) {
    if (c === undefined || c === '' || !existsSync(c)) continue;
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // not executable: keep looking
    }
  }
  return null;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

export class QemuProcess {
  readonly qmp: QmpClient;
  readonly #proc: ChildProcess;

  private constructor(proc: ChildProcess, qmp: QmpClient) {
    this.#proc = proc;
    this.qmp = qmp;
  }

  get pid(): number {
    return this.#proc.pid ?? -1;
  }

  /** Starts `binary args… -qmp unix:DIR/NAME.qmp` and negotiates QMP. */
  static async start(
    binary: string,
    args: readonly string[],
    dir: string,
    name: string,
    timeoutMs = 30_000,
  ): Promise<QemuProcess> {
    const qmpPath = join(dir, `${name}.qmp`);
    const proc = spawn(binary, [...args, '-qmp', `unix:${qmpPath},server=on,wait=off`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    running.add(proc);
    proc.once('exit', () => running.delete(proc));
    const stderr: string[] = [];
    proc.stderr.setEncoding('utf8').on('data', (s: string) => stderr.push(s));
    const deadline = Date.now() + timeoutMs;
    try {
      for (;;) {
        if (proc.exitCode !== null || proc.signalCode !== null) {
          throw new Error(`QEMU ${name} exited: ${stderr.join('').trim()}`);
        }
        if (existsSync(qmpPath)) {
          try {
            return new QemuProcess(proc, await QmpClient.connect(`unix:${qmpPath}`));
          } catch {
            // The socket file appears at bind(), a moment before QEMU accepts on it.
          }
        }
        if (Date.now() > deadline) {
          throw new Error(`QEMU ${name}: no QMP within ${timeoutMs} ms: ${stderr.join('')}`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    } catch (err) {
      proc.kill('SIGKILL');
      throw err;
    }
  }

  async stop(): Promise<void> {
    await this.qmp.close().catch(() => undefined);
    if (this.#proc.exitCode !== null || this.#proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.#proc.once('exit', () => resolve()));
    this.#proc.kill('SIGKILL');
    await exited;
  }
}

/** The machine both QEMUs run: no devices, `size` bytes of RAM, no display. */
function machineArgs(sizeBytes: number): string[] {
  return ['-machine', 'none', '-m', `${sizeBytes >> 20}M`, '-nodefaults', '-display', 'none'];
}

/**
 * A QEMU destination listening on a free loopback port (with all its RAM backed first when
 * `prealloc`; waiting for `migrate-incoming` with `-incoming defer` when `defer`, as multifd
 * needs), and a paused QEMU source whose RAM holds `image` (`-device
 * loader,file=…,addr=0,force-raw=on`).
 */
export async function startQemuPair(
  binary: string,
  dir: string,
  name: string,
  sizeBytes: number,
  image: string,
  prealloc = false,
  defer = false,
): Promise<MigrationPair> {
  const destination = await QemuProcess.start(
    binary,
    [
      ...machineArgs(sizeBytes),
      ...(prealloc ? ['-mem-prealloc'] : []),
      '-incoming',
      defer ? 'defer' : 'tcp:127.0.0.1:0',
    ],
    dir,
    `${name}-dst`,
  );
  let source: QemuProcess;
  try {
    source = await QemuProcess.start(
      binary,
      [...machineArgs(sizeBytes), '-S', '-device', `loader,file=${image},addr=0,force-raw=on`],
      dir,
      `${name}-src`,
    );
  } catch (err) {
    await destination.stop();
    throw err;
  }
  const stop = async (): Promise<void> => {
    await Promise.allSettled([source.stop(), destination.stop()]);
  };
  const dst = { qmp: destination.qmp, pid: destination.pid };
  let uri: string | null = null;
  if (!defer) {
    try {
      uri = await incomingUri(dst.qmp);
    } catch (err) {
      await stop();
      throw err;
    }
  }
  return { source: { qmp: source.qmp, pid: source.pid }, destination: dst, uri, stop };
}
