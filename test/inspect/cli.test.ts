import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { test } from 'node:test';
import { Command } from 'commander';
import { registerCommands } from '../../src/cli/commands/index.ts';
import { inspectFile } from '../../src/inspect/index.ts';
import type { CliResult } from '../helpers/repo.ts';
import { fixture, runCli } from '../helpers/repo.ts';

const TIMEOUT_MS = 60_000;
const DEFAULT_CAPTURE = fixture('qemu-7.2-default.bin');

function inspectRegistered(): boolean {
  const program = new Command();
  registerCommands(program);
  return program.commands.some((c) => c.name() === 'inspect');
}

/**
 * `vfio-migrate inspect ARGS` as a process: the real CLI once the command is registered, else
 * the same command wired the same way by cli-child.
 */
async function inspectCli(args: readonly string[]): Promise<CliResult> {
  if (inspectRegistered()) return runCli(['inspect', ...args], TIMEOUT_MS);
  const fromTs = import.meta.url.endsWith('.ts');
  const child = fileURLToPath(new URL(`./cli-child.${fromTs ? 'ts' : 'js'}`, import.meta.url));
  try {
    const { stdout, stderr } = await promisify(execFile)(
      process.execPath,
      [...(fromTs ? ['--import', 'tsx'] : []), child, 'inspect', ...args],
      { timeout: TIMEOUT_MS, maxBuffer: 64 << 20, env: { ...process.env, NO_COLOR: '1' } },
    );
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'inspect-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('inspect FILE prints the listing and totals and exits 0', async () => {
  const r = await inspectCli([DEFAULT_CAPTURE]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  const lines = r.stdout.split('\n');
  assert.equal(lines[0], `${DEFAULT_CAPTURE}: QEMU migration stream version 3, 54025 bytes`);
  assert.ok(lines.some((l) => /^ +67 {2}PART +2 {2}ram +4 pages, 4092 zero pages$/.test(l)));
  assert.ok(lines.some((l) => /^ +53533 {2}EOF$/.test(l)));
  assert.ok(lines.includes('bytes by section type'));
});

test('--json prints one object equal to the library report', async () => {
  const r = await inspectCli([DEFAULT_CAPTURE, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const json = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.deepEqual(Object.keys(json), [
    'size',
    'version',
    'configuration',
    'items',
    'eof',
    'vmdesc',
    'totals',
    'error',
  ]);
  assert.deepEqual(json, JSON.parse(JSON.stringify(await inspectFile(DEFAULT_CAPTURE))));
  const totals = json.totals as Record<string, unknown>;
  assert.deepEqual(Object.keys(totals), ['ram', 'vfio', 'sections', 'bytes', 'entries']);
});

test('a truncated file: what was decoded on stdout, the offset on stderr, exit 1', async (t) => {
  const path = join(tempDir(t), 'cut.bin');
  writeFileSync(path, readFileSync(DEFAULT_CAPTURE).subarray(0, 30_000));
  const r = await inspectCli([path]);
  assert.equal(r.code, 1);
  assert.match(
    r.stdout,
    /^ +17 {2}START +2 {2}ram \(instance 0, v4\) +MEM_SIZE 16 MiB in 1 block$/m,
  );
  assert.match(r.stdout, /^ +67 {2}PART +2 {2}ram +\d+ pages?, \d+ zero pages \(cut short\)$/m);
  assert.equal(
    r.stderr,
    `vfio-migrate inspect: ${path}: section 'ram' (id 2): unexpected end of stream at offset ` +
      '30000 while reading zero page fill byte\n',
  );
  const json = await inspectCli([path, '--json']);
  assert.equal(json.code, 1);
  assert.deepEqual((JSON.parse(json.stdout) as { error: unknown }).error, {
    message:
      "section 'ram' (id 2): unexpected end of stream at offset 30000 while reading zero page fill byte",
    offset: 30000,
  });
});

test('a missing file and a bad --offset are refused with a message', async (t) => {
  const missing = join(tempDir(t), 'none.bin');
  const r = await inspectCli([missing]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`^vfio-migrate: cannot open ${missing}: ENOENT`));
  const bad = await inspectCli([DEFAULT_CAPTURE, '--offset', '-3']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /"-3" is not a non-negative integer/);
});
