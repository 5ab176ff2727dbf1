/** Live progress of the source: one redrawn status block on a terminal, plain lines otherwise. */
import pc from 'picocolors';
import { bytes, count, rate } from './format.ts';
import type { MigrationInfo, VfioInfo } from './qmp-types.ts';

export class ProgressView {
  readonly #out: NodeJS.WriteStream;
  readonly #tty: boolean;
  #drawn = 0;
  #lastLine = '';
  #lastPlain = 0;

  constructor(out: NodeJS.WriteStream = process.stdout) {
    this.#out = out;
    this.#tty = out.isTTY === true;
  }

  update(elapsedMs: number, info: MigrationInfo, vfio: VfioInfo | null): void {
    const ram = info.ram;
    const parts = [
      `${(elapsedMs / 1000).toFixed(1).padStart(5)}s`,
      (info.status ?? 'none').padEnd(9),
    ];
    if (ram) {
      parts.push(
        `pass ${ram['iteration-count']}`,
        `RAM remaining ${bytes(ram.remaining).padStart(9)}`,
        `sent ${bytes(ram.transferred).padStart(9)}`,
        rate(ram.mbps).padStart(12),
        `dirty ${count(ram['dirty-pages-rate'])} pg/s`,
      );
    }
    const devices = (vfio?.devices ?? []).map(
      (d) => `${d.id} ${d['device-state'].toLowerCase().replaceAll('_', '-')}`,
    );
    const line = parts.join('  ');
    if (this.#tty) {
      this.#clear();
      const block = [line, devices.length ? `        devices: ${devices.join(', ')}` : ''].filter(
        Boolean,
      );
      this.#out.write(block.map((l) => pc.cyan(l)).join('\n') + '\n');
      this.#drawn = block.length;
    } else if (line !== this.#lastLine && elapsedMs - this.#lastPlain >= 1000) {
      this.#out.write(`${line}  ${devices.join(', ')}\n`);
      this.#lastLine = line;
      this.#lastPlain = elapsedMs;
    }
  }

  /** Leaves the last drawn block on screen and stops redrawing it. */
  done(): void {
    this.#drawn = 0;
  }

  #clear(): void {
    for (let i = 0; i < this.#drawn; i++) this.#out.write('\x1b[1A\x1b[2K');
  }
}
