/**
 * Saving to a file and loading it: `migrate file:`, `inspect` on what was written, and a
 * damaged file refused by the destination with the section and offset named, guest not started.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { inspectFile } from '../../src/inspect/index.ts';
import { runCli } from '../helpers/repo.ts';
import { E2e, digest, finished, runStatus, smallGuest, waitFor } from './harness.ts';

test('migrate to file:, inspect it, load it; a damaged copy is refused and never started', async (t) => {
  const e = new E2e(t);
  const config = smallGuest({ vcpus: 0 });
  const src = await e.source(config);
  const file = join(e.dir, 'vm.mig');
  await src.qmp.execute('stop');
  await src.qmp.execute('migrate', { uri: `file:${file}` });
  assert.equal((await waitFor(src, finished, 'the save')).status, 'completed');

  // inspect decodes what we wrote
  const report = await inspectFile(file);
  assert.equal(report.error, null);
  const cli = await runCli(['inspect', file]);
  assert.equal(cli.code, 0, cli.stderr);
  assert.match(cli.stdout, /0000:00:05\.0\/vfio/);
  assert.match(cli.stdout, /ram/);

  // the file loads and gives the same state
  const dst = await e.spawn({ name: 'dst', config, incoming: 'defer', paused: true });
  await dst.qmp.execute('migrate-incoming', { uri: `file:${file}` });
  assert.equal((await waitFor(dst, finished, 'the load')).status, 'completed');
  assert.equal((await digest(dst)).sha256, (await digest(src)).sha256);

  // one flipped byte in the footer of the gpu's END section
  const bytes = readFileSync(file);
  const end = report.items.find(
    (s) => s.item === 'section' && s.type === 'END' && s.idstr.endsWith('06.0/vfio'),
  );
  assert.ok(end, 'the gpu END section');
  const bad = Buffer.from(bytes);
  const footer = end.offset + end.length - 5; // QEMU_VM_SECTION_FOOTER, then u32 section id
  bad[footer] = bad[footer]! ^ 0xff;
  const badFile = join(e.dir, 'bad.mig');
  writeFileSync(badFile, bad);
  const dst2 = await e.spawn({ name: 'dst2', config, incoming: 'defer' });
  await dst2.qmp.execute('migrate-incoming', { uri: `file:${badFile}` });
  const failed = await waitFor(dst2, finished, 'the refusal');
  assert.equal(failed.status, 'failed');
  assert.match(failed['error-desc'] ?? '', /06\.0\/vfio/, 'names the section');
  assert.match(failed['error-desc'] ?? '', new RegExp(`offset ${footer}\\b`), 'names the offset');
  assert.equal(await runStatus(dst2), 'inmigrate', 'the guest was not started');
});
