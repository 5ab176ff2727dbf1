/** `vfio-migrate conformance`: the uAPI checklist against a device, through the interface only. */
import type { Command } from 'commander';
import pc from 'picocolors';
import { ALL_CHECKS, runConformance } from '../../conformance/index.ts';
import type { CheckResult } from '../../conformance/index.ts';
import { createSimDevice, parseSimSpec, simModelsHelp } from '../../device/sim/index.ts';
import { cliParser } from '../parse.ts';

interface Options {
  device: string;
  json?: boolean;
  check?: string[];
  seed: number;
  timeout: number;
}

const MARK: Record<CheckResult['status'], string> = {
  pass: pc.green('PASS'),
  fail: pc.red('FAIL'),
  skip: pc.yellow('SKIP'),
};

function printRow(r: CheckResult): void {
  process.stdout.write(`${MARK[r.status]}  ${r.id.padEnd(32)} ${r.title}\n`);
  if (r.detail)
    process.stdout.write(`      ${pc.dim(r.status === 'fail' ? r.detail : `(${r.detail})`)}\n`);
}

export function registerConformance(program: Command): void {
  program
    .command('conformance')
    .description(
      'run the VFIO migration uAPI conformance checklist against a device and print a pass/fail ' +
        'table; exits non-zero when any check fails',
    )
    .requiredOption(
      '--device <spec>',
      'the device: sim:MODEL[,key=value...], e.g. sim:nic,flags=stop-copy+p2p+pre-copy',
      cliParser((text) => {
        parseSimSpec(text);
        return text;
      }),
    )
    .option('--json', 'print one JSON object with every result')
    .option('--check <id...>', `run only these checks (${ALL_CHECKS.map((c) => c.id).join(', ')})`)
    .option('--seed <n>', 'seed for random chunk sizes', cliParser(parseInteger), 1)
    .option('--timeout <ms>', 'time limit per check', cliParser(parseInteger), 60_000)
    .addHelpText('after', `\nSimulated device models:\n${simModelsHelp()}`)
    .action(async (opts: Options) => {
      const unknown = (opts.check ?? []).filter((id) => !ALL_CHECKS.some((c) => c.id === id));
      if (unknown.length > 0) throw new Error(`unknown check ${unknown.join(', ')}`);
      let n = 0;
      const factory = () => Promise.resolve(createSimDevice(opts.device, { id: `dev${n++}` }));
      const report = await runConformance(ALL_CHECKS, factory, {
        only: opts.check,
        seed: opts.seed,
        timeoutMs: opts.timeout,
        onResult: opts.json ? undefined : printRow,
      });
      if (opts.json) {
        process.stdout.write(JSON.stringify(report, null, 2) + '\n');
      } else {
        const verdict = report.failed === 0 ? pc.green('conformant') : pc.red('NOT conformant');
        process.stdout.write(
          `\n${opts.device} (${report.flags}${report.dmaLogging ? ', DMA logging' : ''}): ` +
            `${report.passed} passed, ${report.failed} failed, ${report.skipped} skipped — ${verdict}\n`,
        );
      }
      if (report.failed > 0) process.exitCode = 1;
    });
}

function parseInteger(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`"${text}" is not a non-negative integer`);
  return n;
}
