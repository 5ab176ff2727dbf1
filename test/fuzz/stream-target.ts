/**
 * The thing fuzzed: a destination VM loading a stream from a file, in this process. One fresh
 * destination per case (an incoming migration runs once). Every case must end in `completed`
 * or in `failed` with an error that says what and where — never an exception, never a hang,
 * never a running guest after a failed load.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { InspectReport, InspectedSection } from '../../src/inspect/index.ts';
import { Vm, parseVmConfig } from '../../src/vm/index.ts';
import type { VmConfig } from '../../src/vm/index.ts';
import type { Capture } from './mutators.ts';

/** A tiny VM with a record-stream device (CRC-protected) and an mtty. */
export const FUZZ_VM: VmConfig = parseVmConfig({
  machine: 'none',
  'ram-blocks': [{ idstr: 'ram', size: '1M' }],
  vcpus: 0,
  populate: { seed: 1, 'zero-share': 0.9 },
  devices: [
    { id: 'nic0', model: 'sim:nic,state-size=64K,chunk-size=16K,dma-rate=0' },
    { id: 'tty0', model: 'sim:mtty' },
  ],
});

/** Saves a valid stream of FUZZ_VM to `path` (the seed of every mutation). */
export async function saveValidStream(path: string): Promise<void> {
  const src = await Vm.create(FUZZ_VM, { deviceTickMs: 0 });
  try {
    src.migration.outgoing.migrate(`file:${path}`);
    const status = await src.migration.outgoing.whenFinished();
    if (status !== 'completed') throw new Error(`saving the fuzz seed: ${status}`);
  } finally {
    await src.destroy();
  }
}

/** The DEV_DATA_STATE delimiter: a u64 size follows it. */
const DEV_DATA_STATE = Buffer.from('ffffffffef100004', 'hex');

/** Offsets of one section's framing bytes: type, id, idstr length, footer. */
function framing(s: InspectedSection): number[] {
  const at = [s.offset, s.offset + 1, s.offset + 4];
  if (s.type === 'START' || s.type === 'FULL') at.push(s.offset + 5);
  if (s.complete) at.push(s.offset + s.length - 5, s.offset + s.length - 1);
  return at;
}

/** A stream's structure, as `inspect` decoded it, for the mutators. */
export function streamCapture(bytes: Buffer, report: InspectReport): Capture {
  const sections = report.items.filter((i): i is InspectedSection => i.item === 'section');
  if (sections.length === 0) throw new Error('the seed stream has no section');
  // The configuration's name length (after magic, version and QEMU_VM_CONFIGURATION).
  const lengths: number[] = [9];
  if (report.vmdesc) lengths.push(report.vmdesc.offset + 1);
  for (const s of sections) if (s.type === 'START' || s.type === 'FULL') lengths.push(s.offset + 5);
  for (
    let at = bytes.indexOf(DEV_DATA_STATE);
    at >= 0;
    at = bytes.indexOf(DEV_DATA_STATE, at + 1)
  ) {
    lengths.push(at + 8, at + 12);
  }
  return {
    bytes,
    parts: sections,
    framing: sections.flatMap(framing),
    lengths,
    headerLength: sections[0]!.offset,
  };
}

export interface LoadOutcome {
  status: string;
  error: string | null;
  runState: string;
}

export async function loadStream(
  dir: string,
  bytes: Uint8Array,
  timeoutMs: number,
): Promise<LoadOutcome> {
  const path = join(dir, 'case.mig');
  writeFileSync(path, bytes);
  const dst = await Vm.create(FUZZ_VM, {
    incoming: 'defer',
    deviceTickMs: 0,
    warn: () => undefined,
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    await dst.migration.incoming.start(`file:${path}`);
    const status = await Promise.race([
      dst.migration.incoming.whenFinished(),
      new Promise<string>((resolve) => (timer = setTimeout(() => resolve('HANG'), timeoutMs))),
    ]);
    return {
      status,
      error: dst.migration.incoming.error?.message ?? null,
      runState: dst.runControl.runState,
    };
  } finally {
    clearTimeout(timer);
    await dst.destroy();
  }
}
