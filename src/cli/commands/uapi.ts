/** `vfio-migrate uapi`: the device state machine of the Linux VFIO migration uAPI, printable. */
import type { Command } from 'commander';
import pc from 'picocolors';
import { cliParser } from '../parse.ts';
import {
  ALL_STATES,
  flagsName,
  parseFlags,
  pathMatrix,
  rawNextStep,
  reachableStates,
  stateName,
} from '../../uapi/index.ts';

export function registerUapi(program: Command): void {
  const uapi = program
    .command('uapi')
    .description('the VFIO migration state machine (vfio_mig_get_next_state) as a device sees it');

  uapi
    .command('paths')
    .description(
      'for a device with the given migration flags, what SET does from every state it can be ' +
        'in to each of the 8 states: the path of primitive arcs and whether a data fd is returned',
    )
    .requiredOption(
      '--flags <list>',
      'migration flags, comma separated: stop-copy[,p2p][,pre-copy]',
      cliParser(parseFlags),
    )
    .option('--json', 'one JSON object: FROM -> TO -> {path, dataFd} or {errno}')
    .action((opts: { flags: number; json?: boolean }) => {
      const matrix = pathMatrix(opts.flags);
      if (opts.json) {
        process.stdout.write(JSON.stringify(matrix, null, 2) + '\n');
        return;
      }
      process.stdout.write(
        `SET outcomes for a device with ${pc.bold(flagsName(opts.flags))}` +
          ` (${pc.green('*')} = SET returns a data fd)\n`,
      );
      for (const from of reachableStates(opts.flags)) {
        process.stdout.write(`\n${pc.bold(`from ${stateName(from)}`)}\n`);
        const row = matrix[stateName(from)]!;
        for (const to of ALL_STATES) {
          const out = row[stateName(to)]!;
          const text =
            'errno' in out
              ? pc.red(out.errno)
              : out.path.length === 1
                ? pc.dim('no-op')
                : out.path.join(' -> ') + (out.dataFd ? pc.green(' *') : '');
          process.stdout.write(`  ${`to ${stateName(to)}`.padEnd(16)} ${text}\n`);
        }
      }
    });

  uapi
    .command('table')
    .description('the raw next-step table vfio_from_fsm_table[cur][new] of the kernel')
    .option('--json', 'print JSON: table[cur][new] = next')
    .action((opts: { json?: boolean }) => {
      const names = ALL_STATES.map(stateName);
      const table = Object.fromEntries(
        ALL_STATES.map((cur) => [
          stateName(cur),
          Object.fromEntries(
            ALL_STATES.map((nw) => [stateName(nw), stateName(rawNextStep(cur, nw))]),
          ),
        ]),
      );
      if (opts.json) {
        process.stdout.write(JSON.stringify(table, null, 2) + '\n');
        return;
      }
      const w = 13;
      process.stdout.write('cur \\ new'.padEnd(w) + names.map((n) => n.padEnd(w)).join('') + '\n');
      for (const cur of names) {
        process.stdout.write(
          cur.padEnd(w) + names.map((n) => table[cur]![n]!.padEnd(w)).join('') + '\n',
        );
      }
    });
}
