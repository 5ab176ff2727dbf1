/** The kernel's behaviour as recorded in test/fixtures/vfio-uapi-table.json. */
import { readJsonFixture } from '../helpers/repo.ts';

type Path = { path: string[]; returns_data_fd: boolean };

export interface KernelTable {
  vfio_from_fsm_table: Record<string, Record<string, string>>;
  state_flags_table: Record<string, number | string>;
  state_values: Record<string, number>;
  derived: Record<
    string,
    {
      flags_value: number;
      settable_states: string[];
      full_paths: Record<string, Record<string, string | Path>>;
    }
  >;
}

export const kernelTable = readJsonFixture<KernelTable>('vfio-uapi-table.json');

/** The table's full_paths entry in the shape `uapi paths --json` prints. */
export function expectedOutcome(
  entry: string | Path,
  from: string,
): { path: string[]; dataFd: boolean } | { errno: string } {
  if (typeof entry !== 'string') return { path: entry.path, dataFd: entry.returns_data_fd };
  if (entry.startsWith('NOOP')) return { path: [from], dataFd: false };
  return { errno: entry };
}
