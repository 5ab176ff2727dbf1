/** `vfio-migrate inspect FILE`: what a saved migration stream holds, section by section. */
import type { Command } from 'commander';
import { inspectFile, renderText } from '../../inspect/index.ts';
import { cliParser, integer } from '../parse.ts';

export interface InspectOptions {
  json?: boolean;
  sections?: boolean;
  vmdesc?: boolean;
  offset?: number;
}

export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description(
      'decode a migration stream saved with `migrate file:PATH` (or QEMU `exec:cat > FILE`): ' +
        'configuration, every section with its payload (ram, VFIO devices, globalstate, timer), ' +
        'commands, EOF and vmdesc, then totals; exits non-zero when the stream is cut short or ' +
        'corrupt, after printing what was decoded',
    )
    .argument('<file>', 'the stream file')
    .option('--json', 'print one JSON object with everything decoded')
    .option(
      '--sections',
      'one line per section (default: a run of PART sections is one line per entry)',
    )
    .option('--vmdesc', 'also print the vmdesc JSON')
    .option(
      '--offset <n>',
      'the stream starts at this file offset (file:PATH,offset=N); offsets count from there',
      cliParser(integer(0)),
    )
    .action(async (file: string, opts: InspectOptions) => {
      process.exitCode = await inspectAction(file, opts);
    });
}

/** Prints the report of `file`; returns the exit code (1 when decoding stopped early). */
export async function inspectAction(file: string, opts: InspectOptions): Promise<number> {
  const report = await inspectFile(file, { offset: opts.offset });
  process.stdout.write(
    opts.json === true
      ? JSON.stringify(report, null, 2) + '\n'
      : renderText(report, { name: file, sections: opts.sections, vmdesc: opts.vmdesc }),
  );
  if (report.error === null) return 0;
  process.stderr.write(`vfio-migrate inspect: ${file}: ${report.error.message}\n`);
  return 1;
}
