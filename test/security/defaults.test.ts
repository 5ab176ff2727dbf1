/**
 * Safe defaults: the QMP UNIX socket is private (0600), a TCP QMP address needs an explicit
 * host, and a migration listener given no host listens on loopback only.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { listen } from '../../src/migration/transport/index.ts';
import { E2e, query, smallGuest } from '../e2e/harness.ts';
import { runCli } from '../helpers/repo.ts';

test('the QMP UNIX socket is created with mode 0600', async (t) => {
  const e = new E2e(t);
  const vm = await e.spawn({ name: 'vm', config: smallGuest({ devices: [], vcpus: 0 }) });
  assert.match(vm.ready.qmp, /^unix:/);
  const mode = statSync(vm.ready.qmp.slice('unix:'.length)).mode & 0o777;
  assert.equal(mode.toString(8), '600');
});

test('a TCP QMP address without a host is refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vfio-qmp-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'vm.json');
  writeFileSync(config, JSON.stringify({ memory: '16M', vcpus: 0 }));
  const r = await runCli(['run', '--config', config, '--qmp', 'tcp::4444'], 30_000);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /QMP address 'tcp::4444': empty host/);
});

/** A local address that is not loopback, if this machine has one. */
function externalAddress(): string | undefined {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (!a.internal && a.family === 'IPv4') return a.address;
  }
  return undefined;
}

function connects(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

test('tcp::PORT listens on loopback only', async (t) => {
  const l = await listen('tcp::0');
  t.after(() => l.close());
  assert.ok(l.uri.transport === 'tcp');
  assert.equal(l.uri.host, '127.0.0.1');
  const accepted = l.accept();
  assert.equal(await connects('127.0.0.1', l.uri.port), true);
  (await accepted).destroy();
  const external = externalAddress();
  if (external === undefined) {
    t.diagnostic('no non-loopback IPv4 address here: only the bound host is checked');
  } else {
    assert.equal(await connects(external, l.uri.port), false, `not reachable on ${external}`);
  }
});

test('a VM started with --incoming tcp::0 reports a loopback listening address', async (t) => {
  const e = new E2e(t);
  const vm = await e.spawn({
    name: 'dst',
    incoming: 'tcp::0',
    config: smallGuest({ devices: [], vcpus: 0 }),
  });
  assert.match(vm.ready.incoming ?? '', /^tcp:127\.0\.0\.1:\d+$/);
  const address = (await query(vm))['socket-address']?.[0];
  assert.equal(address?.type === 'inet' ? address.host : undefined, '127.0.0.1');
});
