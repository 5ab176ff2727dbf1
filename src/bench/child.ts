/**
 * A benchmark helper process: one of this folder's modules run by Node with the loader of the
 * caller (compiled .js normally; the .ts sources through tsx), talking in JSON lines on
 * stdout. Killed when the benchmark process exits, whatever happens.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

export class BenchChild {
  readonly child: ChildProcess;
  readonly #lines: AsyncIterator<string>;
  readonly #stderr: string[] = [];
  readonly #name: string;

  constructor(name: string, module: string, args: readonly string[]) {
    const ts = import.meta.url.endsWith('.ts');
    const entry = fileURLToPath(new URL(`./${module}${ts ? '.ts' : '.js'}`, import.meta.url));
    this.#name = name;
    this.child = spawn(process.execPath, [...(ts ? ['--import', 'tsx'] : []), entry, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    running.add(this.child);
    this.child.once('exit', () => running.delete(this.child));
    this.child.stderr!.setEncoding('utf8').on('data', (s: string) => this.#stderr.push(s));
    this.#lines = createInterface({ input: this.child.stdout! })[Symbol.asyncIterator]();
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** The next JSON line, within `timeoutMs`. */
  async next(timeoutMs = 60_000): Promise<Record<string, unknown>> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${this.#name}: no answer within ${timeoutMs} ms${this.#why()}`)),
        timeoutMs,
      );
    });
    try {
      const r = await Promise.race([this.#lines.next(), timeout]);
      if (r.done === true) throw new Error(`${this.#name} ended early${this.#why()}`);
      return JSON.parse(r.value) as Record<string, unknown>;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Writes one line on the child's stdin. */
  say(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }

  #why(): string {
    const err = this.#stderr.join('').trim();
    return err === '' ? '' : `: ${err}`;
  }
}
