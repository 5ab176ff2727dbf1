/**
 * A VM in its own process: `vfio-migrate run` spawned, its ready line read, its QMP socket
 * connected. The demo and the end-to-end tests drive source and destination this way.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { QmpClient } from '../qmp/index.ts';
import type { RunReadyLine } from './commands/run.ts';

export interface SpawnVmOptions {
  /** Process name for messages, e.g. "source". */
  readonly name: string;
  /** Directory for the config file and the QMP socket. */
  readonly dir: string;
  /** The VM config object (written to DIR/NAME.json). */
  readonly config: unknown;
  readonly incoming?: string;
  readonly paused?: boolean;
  /** How long to wait for the ready line. Default 60 s. */
  readonly readyTimeoutMs?: number;
  /** Extra environment. */
  readonly env?: NodeJS.ProcessEnv;
}

export class VmProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly ready: RunReadyLine;
  readonly qmp: QmpClient;
  readonly #stderr: string[];

  private constructor(
    name: string,
    child: ChildProcess,
    ready: RunReadyLine,
    qmp: QmpClient,
    stderr: string[],
  ) {
    this.name = name;
    this.child = child;
    this.ready = ready;
    this.qmp = qmp;
    this.#stderr = stderr;
  }

  /** What the process wrote on stderr so far (for failure reports). */
  get stderr(): string {
    return this.#stderr.join('');
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  static async spawn(opts: SpawnVmOptions): Promise<VmProcess> {
    const configPath = join(opts.dir, `${opts.name}.json`);
    writeFileSync(configPath, JSON.stringify(opts.config, null, 2));
    const args = [
      new URL('./entry.js', import.meta.url).pathname,
      'run',
      '--config',
      configPath,
      '--qmp',
      `unix:${join(opts.dir, `${opts.name}.qmp`)}`,
    ];
    if (opts.incoming !== undefined) args.push('--incoming', opts.incoming);
    if (opts.paused) args.push('-S');
    const child = spawn(process.execPath, [...profilerArgs(opts.name), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env },
    });
    const stderr: string[] = [];
    child.stderr.setEncoding('utf8').on('data', (s: string) => stderr.push(s));
    const ready = await readReadyLine(opts.name, child, stderr, opts.readyTimeoutMs ?? 60_000);
    const qmp = await QmpClient.connect(ready.qmp);
    return new VmProcess(opts.name, child, ready, qmp, stderr);
  }

  /** `quit` over QMP, then waits for the exit; kills the process if it does not go. */
  async stop(timeoutMs = 10_000): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    await this.qmp.execute('quit').catch(() => undefined);
    await this.qmp.close().catch(() => undefined);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await exited;
    clearTimeout(timer);
  }

  /** SIGKILL, as a crash would. */
  kill(): void {
    this.child.kill('SIGKILL');
  }
}

function readReadyLine(
  name: string,
  child: ChildProcess,
  stderr: string[],
  timeoutMs: number,
): Promise<RunReadyLine> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    const fail = (why: string) => {
      clearTimeout(timer);
      lines.close();
      child.kill('SIGKILL');
      reject(new Error(`${name} VM: ${why}${stderr.length ? `\n${stderr.join('').trim()}` : ''}`));
    };
    const timer = setTimeout(() => fail(`not ready within ${timeoutMs} ms`), timeoutMs);
    child.once('exit', (code, signal) =>
      fail(`exited (${signal ?? `code ${code}`}) before it was ready`),
    );
    lines.on('line', (line) => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        return; // not the ready line
      }
      if (
        typeof parsed === 'object' &&
        parsed !== null &&
        (parsed as RunReadyLine).ready === true
      ) {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        lines.close();
        child.stdout!.resume(); // nothing else is read from it; never let it fill up
        resolve(parsed as RunReadyLine);
      }
    });
  });
}

/**
 * With VFIO_MIGRATE_CPU_PROF_DIR set, every VM process writes a V8 CPU profile there when it
 * exits (`node --cpu-prof`), named after the VM: how benchmarks and tests are profiled.
 */
function profilerArgs(name: string): string[] {
  const dir = process.env.VFIO_MIGRATE_CPU_PROF_DIR;
  if (dir === undefined || dir === '') return [];
  return [
    '--cpu-prof',
    `--cpu-prof-dir=${dir}`,
    `--cpu-prof-name=${name}-${Date.now()}.cpuprofile`,
  ];
}
