/**
 * A real QEMU for tests: find qemu-system-x86_64 (null when absent, so tests skip), start it
 * with a QMP UNIX socket in a temp dir, talk QMP (negotiate, execute, wait for events), and
 * always kill it when the test ends. Every wait is bounded.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { QEMU_BINARY, findQemu } from '../../src/bench/qemu.ts';
import type { MigrationOptionsInit } from '../../src/migration/index.ts';

export { QEMU_BINARY, findQemu };

/**
 * The QEMU binary, and the `skip` option of the tests that need it: false when there is one,
 * else why `what` is skipped.
 */
export function qemuOrSkip(what: string): { qemu: string | null; skip: string | false } {
  const qemu = findQemu();
  return { qemu, skip: qemu === null ? `${QEMU_BINARY} not found: ${what} skipped` : false };
}

/**
 * Our migration options against QEMU 7.2: it predates MIG_CMD_SWITCHOVER_START, so
 * `send-switchover-start` is off, as QEMU itself has it for machine types up to 9.2; the
 * return path is on, as the QEMU side sets it with setReturnPath().
 */
export function qemu72Migration(parameters: Record<string, string> = {}): MigrationOptionsInit {
  return {
    properties: { 'send-switchover-start': false },
    capabilities: [{ capability: 'return-path', state: true }],
    parameters,
  };
}

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

export class QmpError extends Error {
  override readonly name = 'QmpError';
  readonly errorClass: string;

  constructor(command: string, errorClass: string, desc: string) {
    super(`QMP ${command}: ${errorClass}: ${desc}`);
    this.errorClass = errorClass;
  }
}

interface Pending {
  command: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

/** A minimal QMP client over a UNIX socket. */
export class QmpClient {
  readonly events: QmpEvent[] = [];
  private readonly sock: Socket;
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private eventWaiters: { name: string; resolve: (e: QmpEvent) => void }[] = [];
  private greeting: ((v: unknown) => void) | null = null;
  private closedError: Error | null = null;

  private constructor(sock: Socket) {
    this.sock = sock;
    sock.setEncoding('utf8');
    sock.on('data', (text: string) => this.onData(text));
    sock.on('close', () => this.onClose(new Error('QMP connection closed')));
    sock.on('error', (err) => this.onClose(err));
  }

  /** Connects, reads the greeting and negotiates capabilities. */
  static async connect(path: string, timeoutMs = 10_000): Promise<QmpClient> {
    const sock = connect({ path });
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        sock.once('connect', resolve);
        sock.once('error', reject);
      }),
      timeoutMs,
      'QMP connect',
    );
    const client = new QmpClient(sock);
    await withTimeout(
      new Promise((resolve) => (client.greeting = resolve)),
      timeoutMs,
      'QMP greeting',
    );
    await client.execute('qmp_capabilities');
    return client;
  }

  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    timeoutMs = 10_000,
  ): Promise<T> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = this.nextId++;
    const msg =
      args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
    const reply = new Promise<T>((resolve, reject) => {
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject });
    });
    this.sock.write(`${JSON.stringify(msg)}\n`);
    return withTimeout(reply, timeoutMs, `QMP ${command}`);
  }

  /** Runs an HMP command line (e.g. "xp /4xb 0x100000") and returns its text output. */
  hmp(commandLine: string): Promise<string> {
    return this.execute<string>('human-monitor-command', { 'command-line': commandLine });
  }

  /** The first event `name` received from now on, or one already received if `past`. */
  waitEvent(name: string, timeoutMs = 10_000, past = false): Promise<QmpEvent> {
    const seen = past ? this.events.find((e) => e.event === name) : undefined;
    if (seen) return Promise.resolve(seen);
    return withTimeout(
      new Promise<QmpEvent>((resolve) => this.eventWaiters.push({ name, resolve })),
      timeoutMs,
      `QMP event ${name}`,
    );
  }

  close(): void {
    this.sock.destroy();
  }

  private onData(text: string): void {
    this.buffer += text;
    for (let nl = this.buffer.indexOf('\n'); nl >= 0; nl = this.buffer.indexOf('\n')) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line !== '') this.onMessage(JSON.parse(line) as Record<string, unknown>);
    }
  }

  private onMessage(msg: Record<string, unknown>): void {
    if ('QMP' in msg) {
      this.greeting?.(msg);
      this.greeting = null;
    } else if ('event' in msg) {
      const ev = msg as unknown as QmpEvent;
      this.events.push(ev);
      const hit = this.eventWaiters.filter((w) => w.name === ev.event);
      this.eventWaiters = this.eventWaiters.filter((w) => w.name !== ev.event);
      for (const w of hit) w.resolve(ev);
    } else if (typeof msg.id === 'number') {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      const err = msg.error as { class: string; desc: string } | undefined;
      if (err) p.reject(new QmpError(p.command, err.class, err.desc));
      else p.resolve(msg.return);
    }
  }

  private onClose(err: Error): void {
    this.closedError ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

export class QemuProcess {
  readonly dir: string;
  readonly qmp: QmpClient;
  readonly exited: Promise<number | null>;
  private readonly proc: ChildProcess;
  private readonly output: string[];

  constructor(
    dir: string,
    proc: ChildProcess,
    qmp: QmpClient,
    output: string[],
    exited: Promise<number | null>,
  ) {
    this.dir = dir;
    this.proc = proc;
    this.qmp = qmp;
    this.output = output;
    this.exited = exited;
  }

  /** What QEMU printed on stdout and stderr. */
  get log(): string {
    return this.output.join('');
  }

  /** Kills QEMU (SIGKILL) and removes its temp dir. */
  async kill(): Promise<void> {
    this.qmp.close();
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
    await withTimeout(this.exited, 5000, 'QEMU exit').catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface StartOptions {
  /** Registers kill() with t.after(). */
  t?: TestContext;
  timeoutMs?: number;
  /** Files to create in QEMU's temp dir before it starts (name → content). */
  files?: Record<string, Uint8Array>;
}

/**
 * Starts `binary` with `args(dir)` plus a QMP socket in a fresh temp dir (so args can name
 * files written there) and returns once QMP is negotiated.
 */
export async function startQemu(
  binary: string,
  args: (dir: string) => string[],
  options: StartOptions = {},
): Promise<QemuProcess> {
  const timeoutMs = options.timeoutMs ?? 15_000;
  const dir = mkdtempSync(join(tmpdir(), 'vfio-mig-qemu-'));
  for (const [name, content] of Object.entries(options.files ?? {})) {
    writeFileSync(join(dir, name), content);
  }
  const qmpPath = join(dir, 'qmp.sock');
  const proc = spawn(binary, [...args(dir), '-qmp', `unix:${qmpPath},server=on,wait=off`], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(proc);
  const output: string[] = [];
  proc.stdout?.setEncoding('utf8').on('data', (s: string) => output.push(s));
  proc.stderr?.setEncoding('utf8').on('data', (s: string) => output.push(s));
  const exited = new Promise<number | null>((resolve) => {
    proc.once('exit', (code) => {
      running.delete(proc);
      resolve(code);
    });
    proc.once('error', (err) => {
      output.push(String(err));
      running.delete(proc);
      resolve(null);
    });
  });
  const deadline = Date.now() + timeoutMs;
  try {
    while (!existsSync(qmpPath)) {
      if (proc.exitCode !== null || proc.signalCode !== null || Date.now() > deadline) {
        throw new Error(`QEMU did not open its QMP socket: ${output.join('')}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    let qmp: QmpClient | undefined;
    while (qmp === undefined) {
      try {
        qmp = await QmpClient.connect(qmpPath, Math.max(1000, deadline - Date.now()));
      } catch (err) {
        // The socket file appears at bind(), a moment before QEMU listens on it.
        if ((err as NodeJS.ErrnoException).code !== 'ECONNREFUSED' || Date.now() > deadline) {
          throw err;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    const q = new QemuProcess(dir, proc, qmp, output, exited);
    options.t?.after(() => q.kill());
    return q;
  } catch (err) {
    proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls query-migrate until `status` is terminal; returns the last reply. */
export async function waitMigration(
  qmp: QmpClient,
  timeoutMs = 20_000,
): Promise<{ status: string; [k: string]: unknown }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await qmp.execute<{ status?: string }>('query-migrate');
    const status = info.status ?? 'none';
    if (['completed', 'failed', 'cancelled'].includes(status)) return { ...info, status };
    if (Date.now() > deadline) throw new Error(`migration still '${status}' after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The `return-path` capability on, on a QEMU source or destination. */
export async function setReturnPath(qmp: QmpClient): Promise<void> {
  await qmp.execute('migrate-set-capabilities', {
    capabilities: [{ capability: 'return-path', state: true }],
  });
}

/** Where a listening QEMU destination takes its migration: it reports the port picked for 0. */
export async function qemuIncomingUri(qmp: QmpClient): Promise<string> {
  const info = await qmp.execute<{ 'socket-address'?: { type: string; port?: string }[] }>(
    'query-migrate',
  );
  const address = info['socket-address']?.[0];
  const port = address?.type === 'inet' ? Number(address.port) : NaN;
  if (!Number.isInteger(port) || port <= 0) {
    throw new Error(`QEMU reports no listening TCP port: ${JSON.stringify(info)}`);
  }
  return `tcp:127.0.0.1:${port}`;
}

/** `migrate-incoming` on a free loopback port, on a QEMU started with `-incoming defer`. */
export async function qemuListen(qmp: QmpClient): Promise<string> {
  await qmp.execute('migrate-incoming', { uri: 'tcp:127.0.0.1:0' });
  return qemuIncomingUri(qmp);
}

/** A QEMU destination (destinationArgs) listening on a free loopback port, and its URI. */
export async function startQemuDestination(
  binary: string,
  t: TestContext,
): Promise<{ q: QemuProcess; uri: string }> {
  const q = await startQemu(binary, () => destinationArgs('tcp:127.0.0.1:0'), { t });
  return { q, uri: await qemuIncomingUri(q.qmp) };
}

/** QEMU's whole guest RAM (GUEST_RAM bytes from 0), through `pmemsave` into its temp dir. */
export async function qemuGuestRam(q: QemuProcess): Promise<Buffer> {
  const dump = join(q.dir, 'ram.bin');
  await q.qmp.execute('pmemsave', { val: 0, size: GUEST_RAM, filename: dump });
  return readFileSync(dump);
}

/** Bytes of guest memory through HMP `xp`, parsed from its hex dump. */
export async function readGuestBytes(qmp: QmpClient, addr: number, n: number): Promise<Buffer> {
  const text = await qmp.hmp(`xp /${n}xb 0x${addr.toString(16)}`);
  const bytes = [...text.matchAll(/0x([0-9a-f]{2})\b/g)].map((m) => Number.parseInt(m[1]!, 16));
  return Buffer.from(bytes);
}

// ---- the guest-memory pattern the fixtures were captured with ------------------------------

export const PAGE = 4096;
export const GUEST_RAM = 16 << 20;

/** Where each pattern file is loaded, and its pages. */
export const PATTERN_LOADS = [
  { file: 'qemu-pattern-a.bin', addr: 0x100000, pages: 4 },
  { file: 'qemu-pattern-b.bin', addr: 0xabc000, pages: 1 },
] as const;

/**
 * Pattern file content: page 1 of file a is all zero (QEMU sends it as a zero page), the
 * others are distinct non-zero byte sequences.
 */
export function patternFile(index: number): Buffer {
  const load = PATTERN_LOADS[index]!;
  const buf = Buffer.alloc(load.pages * PAGE);
  for (let p = 0; p < load.pages; p++) {
    if (index === 0 && p === 1) continue;
    for (let i = 0; i < PAGE; i++) {
      buf[p * PAGE + i] = (index * 101 + p * 37 + i * 7 + 1) & 0xff;
    }
  }
  return buf;
}

/** The guest RAM of a source started with sourceArgs: the pattern files at their addresses. */
export function patternRam(): Buffer {
  const ram = Buffer.alloc(GUEST_RAM);
  PATTERN_LOADS.forEach((l, i) => patternFile(i).copy(ram, l.addr));
  return ram;
}

/** The source command line used for the captures (see test/fixtures/qemu-7.2-README.md). */
export function sourceArgs(dir: string): string[] {
  return [
    '-machine',
    'none',
    '-m',
    '16M',
    '-nodefaults',
    '-display',
    'none',
    '-S',
    ...PATTERN_LOADS.flatMap((l) => [
      '-device',
      `loader,file=${join(dir, l.file)},addr=0x${l.addr.toString(16)},force-raw=on`,
    ]),
  ];
}

/** The destination command line: same machine, waiting on `uri`. */
export function destinationArgs(uri: string): string[] {
  return ['-machine', 'none', '-m', '16M', '-nodefaults', '-display', 'none', '-incoming', uri];
}

/** Pattern files to hand to startQemu({ files }). */
export function patternFiles(): Record<string, Uint8Array> {
  return Object.fromEntries(PATTERN_LOADS.map((l, i) => [l.file, patternFile(i)]));
}
