/**
 * Request checking, negotiation and argument errors, without sockets. Expected texts are what
 * QEMU 7.2.22 answered to the same requests (commands modelled with QEMU's argument types).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { z } from 'zod';
import { registerBuiltins } from '../../src/qmp/builtins.ts';
import { dispatchRequest } from '../../src/qmp/dispatch.ts';
import type { DispatchEnv } from '../../src/qmp/dispatch.ts';
import { QmpError } from '../../src/qmp/errors.ts';
import { parseJsonText } from '../../src/qmp/json-parser.ts';
import { QmpCommandRegistry } from '../../src/qmp/registry.ts';
import type { QmpSession } from '../../src/qmp/registry.ts';

const capability = z.object({
  capability: z.enum(['events', 'return-path', 'switchover-ack', 'multifd']),
  state: z.boolean(),
});

function makeRegistry(): { registry: QmpCommandRegistry; quits: number[] } {
  const registry = new QmpCommandRegistry();
  const quits: number[] = [];
  registerBuiltins(registry, {
    version: { qemu: { micro: 0, minor: 1, major: 10 }, package: 'test' },
    onQuit: () => void quits.push(1),
  });
  registry.register('query-status', {
    handler: () => ({ status: 'running', singlestep: false, running: true }),
  });
  registry.register('migrate', { args: z.object({ uri: z.string() }), handler: () => undefined });
  registry.register('migrate-set-capabilities', {
    args: z.object({ capabilities: z.array(capability) }),
    handler: () => undefined,
  });
  registry.register('migrate-set-parameters', {
    args: z.object({
      'downtime-limit': z
        .number()
        .int()
        .refine((v) => v >= 0 && v <= 2_000_000, {
          message:
            "Parameter 'downtime_limit' expects an integer in the range of 0 to (2000 * 1000) ms",
        })
        .optional(),
      'multifd-channels': z.number().int().min(1).max(255).optional(),
      'multifd-compression': z.enum(['none', 'zlib', 'zstd']).optional(),
      'tls-creds': z.union([z.string(), z.null()]).optional(),
    }),
    handler: () => undefined,
  });
  registry.register('migrate-recover', {
    args: z.object({ uri: z.string() }),
    oob: true,
    handler: () => {
      throw new QmpError(
        'GenericError',
        'Migrate recover can only be run when postcopy is paused.',
      );
    },
  });
  registry.register('boom', {
    handler: () => {
      throw new TypeError('something broke');
    },
  });
  registry.register('throws-string', {
    // A non-Error rejection is exactly what this command exists to test.
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
    handler: () => Promise.reject('plain string'),
  });
  registry.register('bad-return', { handler: () => ({ n: 1n }) });
  return { registry, quits };
}

function session(negotiated: boolean, oob = false): QmpSession {
  return { negotiated, oob };
}

async function ask(
  registry: QmpCommandRegistry,
  s: QmpSession,
  request: string,
  hooks: (() => void | Promise<void>)[] = [],
): Promise<unknown> {
  const env: DispatchEnv = {
    registry,
    session: s,
    client: { id: 1, peer: 'unix:/test' },
    signal: new AbortController().signal,
    afterReply: (fn) => hooks.push(fn),
  };
  const reply = await dispatchRequest(env, parseJsonText(request));
  assert.ok(reply.endsWith('\r\n'), 'every message ends with CRLF');
  return JSON.parse(reply);
}

const err = (cls: string, desc: string, id?: unknown): unknown =>
  id === undefined ? { error: { class: cls, desc } } : { id, error: { class: cls, desc } };

test('negotiation: only qmp_capabilities before it, QEMU errors before and after', async () => {
  const { registry } = makeRegistry();
  const s = session(false);
  const expecting = "Expecting capabilities negotiation with 'qmp_capabilities'";
  assert.deepEqual(
    await ask(registry, s, '{"execute":"query-version","id":1}'),
    err('CommandNotFound', expecting, 1),
  );
  assert.deepEqual(
    await ask(registry, s, '{"execute":"bogus","id":1}'),
    err('CommandNotFound', expecting, 1),
  );
  // Envelope errors are not rewritten, and exec-oob is not accepted before OOB is enabled.
  assert.deepEqual(
    await ask(registry, s, '{"exec-oob":"qmp_capabilities","id":0}'),
    err('GenericError', "QMP input member 'exec-oob' is unexpected", 0),
  );
  assert.deepEqual(
    await ask(registry, s, '{"execute":"qmp_capabilities","arguments":{"enable":"oob"},"id":2}'),
    err('GenericError', "Invalid parameter type for 'enable', expected: array", 2),
  );
  assert.deepEqual(
    await ask(registry, s, '{"execute":"qmp_capabilities","arguments":{"foo":1},"id":3}'),
    err('GenericError', "Parameter 'foo' is unexpected", 3),
  );
  assert.equal(s.negotiated, false);
  assert.deepEqual(
    await ask(
      registry,
      s,
      '{"execute":"qmp_capabilities","arguments":{"enable":["oob"]},"id":"a"}',
    ),
    { return: {}, id: 'a' },
  );
  assert.deepEqual(s, { negotiated: true, oob: true });
  assert.deepEqual(
    await ask(registry, s, '{"execute":"qmp_capabilities","id":2}'),
    err('CommandNotFound', 'Capabilities negotiation is already complete, command ignored', 2),
  );
  assert.deepEqual(await ask(registry, s, '{"execute":"query-version","id":7}'), {
    return: { qemu: { micro: 0, minor: 1, major: 10 }, package: 'test' },
    id: 7,
  });
});

test('request envelope errors, in QEMU words, with the id echoed', async () => {
  const { registry } = makeRegistry();
  const s = session(true, true);
  const cases: [string, unknown][] = [
    ['{"id":3}', err('GenericError', "QMP input lacks member 'execute'", 3)],
    ['{"execute":5,"id":4}', err('GenericError', "QMP input member 'execute' must be a string", 4)],
    [
      '{"execute":"query-status","arguments":[1],"id":5}',
      err('GenericError', "QMP input member 'arguments' must be an object", 5),
    ],
    [
      '{"execute":"query-status","foo":1,"id":6}',
      err('GenericError', "QMP input member 'foo' is unexpected", 6),
    ],
    ['[1,2]', err('GenericError', 'QMP input must be a JSON object')],
    ['"str"', err('GenericError', 'QMP input must be a JSON object')],
    [
      '{"execute":"bogus","id":{"x":[1]}}',
      err('CommandNotFound', 'The command bogus has not been found', { x: [1] }),
    ],
    [
      '{"exec-oob":"query-status","id":18}',
      err('GenericError', 'The command query-status does not support OOB', 18),
    ],
    [
      '{"exec-oob":"bogus","id":2}',
      err('CommandNotFound', 'The command bogus has not been found', 2),
    ],
    [
      '{"execute":"query-status","exec-oob":"query-status","id":20}',
      err('GenericError', "QMP input member 'execute' clashes with 'exec-oob'", 20),
    ],
    [
      '{"execute":"query-status","id":21,"control":{"run-oob":true}}',
      err('GenericError', "QMP input member 'control' is unexpected", 21),
    ],
    [
      '{"exec-oob":"migrate-recover","arguments":{"uri":"x"},"id":19}',
      err('GenericError', 'Migrate recover can only be run when postcopy is paused.', 19),
    ],
  ];
  for (const [request, expected] of cases) {
    assert.deepEqual(await ask(registry, s, request), expected, request);
  }
});

test('ids of every JSON type are echoed as sent', async () => {
  const { registry } = makeRegistry();
  const s = session(true);
  for (const id of [0, -1.5, 'a', '', null, [], [1, 'x'], { a: { b: [null] } }, true]) {
    const reply = await ask(registry, s, JSON.stringify({ execute: 'query-status', id }));
    assert.deepEqual(reply, {
      return: { status: 'running', singlestep: false, running: true },
      id,
    });
    const bad = await ask(registry, s, JSON.stringify({ execute: 'bogus', id }));
    assert.deepEqual((bad as { id: unknown }).id, id);
  }
  const none = await ask(registry, s, '{"execute":"query-status"}');
  assert.equal(Object.hasOwn(none as object, 'id'), false);
});

test('argument errors in QEMU wording', async () => {
  const { registry } = makeRegistry();
  const s = session(true);
  const cases: [string, Record<string, unknown>, string][] = [
    ['migrate', {}, "Parameter 'uri' is missing"],
    ['migrate', { uri: 5 }, "Invalid parameter type for 'uri', expected: string"],
    ['migrate', { uri: 'x', bogus: 1 }, "Parameter 'bogus' is unexpected"],
    ['query-status', { x: 1 }, "Parameter 'x' is unexpected"],
    [
      'migrate-set-capabilities',
      { capabilities: [{ capability: 'events', state: 'x' }] },
      "Invalid parameter type for 'capabilities[0].state', expected: boolean",
    ],
    [
      'migrate-set-capabilities',
      { capabilities: [{ state: true }] },
      "Parameter 'capabilities[0].capability' is missing",
    ],
    [
      'migrate-set-capabilities',
      { capabilities: 5 },
      "Invalid parameter type for 'capabilities', expected: array",
    ],
    [
      'migrate-set-capabilities',
      { capabilities: [{ capability: 'nonsense', state: true }] },
      "Parameter 'capabilities[0].capability' does not accept value 'nonsense'",
    ],
    [
      'migrate-set-parameters',
      { 'multifd-compression': 'zz' },
      "Parameter 'multifd-compression' does not accept value 'zz'",
    ],
    [
      'migrate-set-parameters',
      { 'multifd-compression': 5 },
      "Invalid parameter type for 'multifd-compression', expected: string",
    ],
    [
      'migrate-set-parameters',
      { 'downtime-limit': -1 },
      "Parameter 'downtime_limit' expects an integer in the range of 0 to (2000 * 1000) ms",
    ],
    [
      'migrate-set-parameters',
      { 'downtime-limit': 1.5 },
      "Invalid parameter type for 'downtime-limit', expected: integer",
    ],
    [
      'migrate-set-parameters',
      { 'multifd-channels': 300 },
      "Parameter 'multifd-channels' expects a value <= 255",
    ],
    [
      'migrate-set-parameters',
      { 'tls-creds': 5 },
      "Invalid parameter type for 'tls-creds', expected: string or null",
    ],
  ];
  for (const [command, args, desc] of cases) {
    const reply = await ask(
      registry,
      s,
      JSON.stringify({ execute: command, arguments: args, id: 1 }),
    );
    assert.deepEqual(reply, err('GenericError', desc, 1), `${command} ${JSON.stringify(args)}`);
  }
});

test('handler failures become error replies, never exceptions', async () => {
  const { registry } = makeRegistry();
  const s = session(true);
  assert.deepEqual(
    await ask(registry, s, '{"execute":"boom","id":1}'),
    err('GenericError', 'something broke', 1),
  );
  assert.deepEqual(
    await ask(registry, s, '{"execute":"throws-string","id":2}'),
    err('GenericError', 'plain string', 2),
  );
  const bad = (await ask(registry, s, '{"execute":"bad-return","id":3}')) as {
    error: { class: string; desc: string };
  };
  assert.equal(bad.error.class, 'GenericError');
  assert.match(bad.error.desc, /^The command bad-return returned a value that is not JSON/);
});

test('query-commands lists the registry; quit schedules its hook after the reply', async () => {
  const { registry, quits } = makeRegistry();
  const s = session(true);
  const reply = (await ask(registry, s, '{"execute":"query-commands"}')) as {
    return: { name: string }[];
  };
  const names = reply.return.map((c) => c.name);
  for (const name of ['qmp_capabilities', 'query-version', 'query-commands', 'quit', 'migrate']) {
    assert.ok(names.includes(name), name);
  }
  assert.equal(names.length, registry.names().length);
  const hooks: (() => void | Promise<void>)[] = [];
  assert.deepEqual(await ask(registry, s, '{"execute":"quit","id":9}', hooks), {
    return: {},
    id: 9,
  });
  assert.equal(quits.length, 0, 'the hook does not run inside dispatch');
  assert.equal(hooks.length, 1);
  await hooks[0]!();
  assert.equal(quits.length, 1);
});

test('registration refuses duplicates and malformed names', () => {
  const { registry } = makeRegistry();
  assert.throws(() => registry.register('migrate', { handler: () => 1 }), /already registered/);
  assert.throws(
    () => registry.register('bad name', { handler: () => 1 }),
    /invalid QMP command name/,
  );
  assert.throws(() => registry.register('', { handler: () => 1 }), /invalid QMP command name/);
});
