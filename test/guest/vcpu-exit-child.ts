/**
 * Child process for vcpus.test.ts: starts two vCPUs, lets them run, then either destroys them
 * or leaves them running, prints a line and returns. The test checks the process ends by
 * itself (no process.exit here): nothing of the vCPUs may keep it alive. Without a mode
 * argument it does nothing (`node --test dist/test/` also runs every .js file under test/).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Vcpus } from '../../src/guest/vcpus.ts';
import { GuestMemory, MiB } from '../../src/memory/index.ts';

const mode = process.argv[2];
if (mode === 'destroy' || mode === 'leave-running') await run(mode);

async function run(mode: string): Promise<void> {
  const vcpus = await Vcpus.create(GuestMemory.pc(8 * MiB), {
    count: 2,
    workload: { dirtyRateMiBps: 256, pattern: { kind: 'uniform' } },
  });
  vcpus.resumeAll();
  await sleep(100);
  if (mode === 'destroy') {
    await vcpus.pauseAll();
    await vcpus.destroy();
  }
  process.stdout.write(`${mode}: ran ${vcpus.stats().pagesWritten} pages, left\n`);
}
