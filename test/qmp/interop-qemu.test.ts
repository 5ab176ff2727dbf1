/**
 * Against a real QEMU, when one is installed (Debian's qemu-system-x86): our client drives
 * QEMU, and the same requests sent to QEMU and to our server get the same replies.
 * Skipped, with a message, when qemu-system-x86_64 is absent.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import { QmpClient } from '../../src/qmp/client.ts';
import { QmpError } from '../../src/qmp/errors.ts';
import type { JsonObject } from '../../src/qmp/json-parser.ts';
import { QmpServer } from '../../src/qmp/server.ts';
import { findQemu, startQemu } from '../helpers/qemu.ts';
import { RawQmp, tempDir } from './raw-client.ts';

const QEMU = findQemu();
const skip = QEMU === null ? 'qemu-system-x86_64 is not installed' : false;
const MACHINE = ['-machine', 'none', '-nodefaults', '-display', 'none'];

/** A QEMU with nobody on its QMP socket, for our own clients to dial. */
async function freeQemu(t: TestContext): Promise<string> {
  const qemu = await startQemu(QEMU!, () => MACHINE, { t });
  qemu.qmp.close(); // QEMU serves one QMP client at a time
  return `unix:${join(qemu.dir, 'qmp.sock')}`;
}

test(
  'our client drives a real QEMU: version, status, events, error replies',
  { skip },
  async (t) => {
    const qmp = await QmpClient.connect(await freeQemu(t));
    t.after(() => qmp.close());
    const greeting = qmp.greeting.QMP;
    assert.deepEqual(greeting.capabilities, ['oob']);
    assert.ok(greeting.version.qemu.major >= 7);
    assert.deepEqual(await qmp.execute('query-version'), greeting.version);
    assert.equal((await qmp.execute<{ status: string }>('query-status')).status, 'running');

    const stopped = qmp.waitEvent('STOP', undefined, 5000);
    await qmp.execute('stop');
    const ev = await stopped;
    assert.ok(Math.abs(ev.timestamp.seconds - Date.now() / 1000) < 60);
    assert.equal((await qmp.execute<{ status: string }>('query-status')).status, 'paused');

    await assert.rejects(qmp.execute('bogus'), (err: unknown) => {
      assert.ok(err instanceof QmpError);
      assert.equal(err.errorClass, 'CommandNotFound');
      assert.equal(err.desc, 'The command bogus has not been found');
      return true;
    });
    await assert.rejects(qmp.execute('migrate', {}), {
      errorClass: 'GenericError',
      desc: "Parameter 'uri' is missing",
    });
  },
);

/** Protocol-level requests, each answered by exactly one reply in QEMU and in our server. */
const REQUESTS = [
  '{"execute":"query-status","id":1}',
  '{"execute":"bogus","id":"b"}',
  '{"exec-oob":"qmp_capabilities","id":0}',
  '{"id":"before"}',
  '{"execute":"qmp_capabilities","arguments":{"enable":"oob"},"id":2}',
  '{"execute":"qmp_capabilities","arguments":{"foo":1},"id":3}',
  '{"execute":"qmp_capabilities","arguments":{"enable":["oob"]},"id":"a"}',
  '{"execute":"qmp_capabilities","id":2}',
  '{"id":3}',
  '{"execute":5,"id":4}',
  '{"execute":"query-status","arguments":[1],"id":5}',
  '{"execute":"query-status","foo":1,"id":6}',
  '[1,2]',
  '"str"',
  '{"execute":"bogus","id":{"x":[1]}}',
  '{"exec-oob":"query-status","id":18}',
  '{"exec-oob":"bogus","id":19}',
  '{"execute":"query-status","exec-oob":"query-status","id":20}',
  '{"execute":"query-status","id":21,"control":{"run-oob":true}}',
  '{"execute":"query-status","arguments":{"x":1},"id":22}',
  '{"execute":"query-status","id":null}',
  '{"execute":"query-status","id":[]}',
  '{"execute":"query-status","id":-1.5e3}',
  '{"execute":"query-status","id":"\u00e9\u{1f600}"}',
  '{"execute":"query-status","id":"\\ud83d\\ude00\\n"}',
  `{'execute':'query-status','id':'x}'}`,
  '{"a":1,"a":2}',
  '{bad json}',
  '{"execute" "query-status"}',
  '{1:2}',
  '[1 2]',
  '[tru]',
  '[0e5]',
  '{"execute":"query-status","id":"\\ud800"}',
  '{"execute":"query-status","id":"\\x"}',
  '{"execute":"query-status","id":"\\uFFFE"}',
  '{"execute":"query-commands","arguments":{"x":1},"id":"qc"}',
  '{"execute":"quit","arguments":{"now":true},"id":"q"}',
];

async function replies(address: string, t: TestContext): Promise<JsonObject[]> {
  const raw = await RawQmp.connect(address, t);
  await raw.next(); // greeting
  const out: JsonObject[] = [];
  for (const request of REQUESTS) {
    raw.send(request);
    out.push(await raw.next());
  }
  raw.socket.destroy();
  return out;
}

test(
  'the same requests get the same replies from QEMU and from our server',
  { skip },
  async (t) => {
    const fromQemu = await replies(await freeQemu(t), t);

    const server = new QmpServer();
    t.after(() => server.close());
    const status = fromQemu.find((r) => r.id === null && 'return' in r);
    server.register('query-status', { handler: () => status?.return ?? {} });
    server.register('migrate-recover', { oob: true, handler: () => ({}) });
    const ours = await replies(await server.listen(`unix:${join(await tempDir(t), 's')}`), t);

    REQUESTS.forEach((request, i) => assert.deepEqual(ours[i], fromQemu[i], request));
  },
);
