/**
 * Framing on JSON object boundaries: arbitrary commands, concatenated with arbitrary
 * whitespace (or none), delivered in chunks of any size down to one byte, come back exactly;
 * limits produce one error and the next message still parses; garbage never throws.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { JsonFramer } from '../../src/qmp/framer.ts';
import type { JsonFramerLimits } from '../../src/qmp/framer.ts';
import { JsonParseError, parseJsonBytes } from '../../src/qmp/json-parser.ts';
import type { JsonValue } from '../../src/qmp/json-parser.ts';

type Out = { message: JsonValue } | { error: string };

/** Feeds `bytes` in chunks cut at `cuts` (cycled) and parses every message. */
function frame(bytes: Buffer, cuts: readonly number[], limits?: Partial<JsonFramerLimits>): Out[] {
  const out: Out[] = [];
  const framer = new JsonFramer(
    {
      message(msg) {
        try {
          out.push({ message: parseJsonBytes(msg) });
        } catch (err) {
          assert.ok(err instanceof JsonParseError, String(err));
          out.push({ error: err.message });
        }
      },
      error: (desc) => out.push({ error: desc }),
    },
    limits,
  );
  let at = 0;
  for (let k = 0; at < bytes.length; k++) {
    const size = cuts.length === 0 ? bytes.length : cuts[k % cuts.length]!;
    // Copy each chunk, as a socket delivers fresh buffers.
    framer.push(Buffer.from(bytes.subarray(at, at + size)));
    at += size;
  }
  return out;
}

function hasNoncharacter(s: string): boolean {
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if ((cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe) return true;
  }
  return false;
}

const whitespace = fc
  .array(fc.constantFrom(' ', '\t', '\r', '\n', '\r\n'), { maxLength: 4 })
  .map((a) => a.join(''));

/** Strings full of what trips a naive framer: braces, quotes, escapes, unicode. */
const nastyString = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 12 }),
  fc
    .array(
      fc.constantFrom('{', '}', '[', ']', '"', "'", '\\', '\\"', 'é', '\u{1f600}', '\n', ' '),
      {
        maxLength: 12,
      },
    )
    .map((a) => a.join('')),
);

const jsonValue = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    nastyString,
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(nastyString, tie('value'), { maxKeys: 4 }),
  ),
})).value as fc.Arbitrary<JsonValue>;

const command = fc.record(
  {
    execute: fc.constantFrom('query-status', 'migrate', 'qmp_capabilities', 'x-{weird}"name'),
    arguments: fc.dictionary(nastyString, jsonValue, { maxKeys: 4 }),
    id: jsonValue,
  },
  { requiredKeys: ['execute'] },
);

const cuts = fc.oneof(
  fc.constant([1]),
  fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 8 }),
  fc.constant([]),
);

test('property: commands with arbitrary values, any whitespace, any chunking, parse back exactly', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(whitespace, command), { minLength: 1, maxLength: 6 }),
      whitespace,
      cuts,
      (items, tail, chunking) => {
        const text = items.map(([ws, cmd]) => ws + JSON.stringify(cmd)).join('') + tail;
        fc.pre(!hasNoncharacter(text));
        const expected = items.map(([, cmd]) => ({
          message: JSON.parse(JSON.stringify(cmd)) as JsonValue,
        }));
        assert.deepEqual(frame(Buffer.from(text), chunking), expected);
      },
    ),
    { numRuns: 400 },
  );
});

test('property: top-level values of any JSON type, whitespace-separated, come back in order', () => {
  fc.assert(
    fc.property(fc.array(jsonValue, { minLength: 1, maxLength: 6 }), cuts, (values, chunking) => {
      const text = values.map((v) => JSON.stringify(v)).join(' \n');
      fc.pre(!hasNoncharacter(text));
      const expected = values.map((v) => ({ message: JSON.parse(JSON.stringify(v)) as JsonValue }));
      assert.deepEqual(frame(Buffer.from(text + ' '), chunking), expected);
    }),
    { numRuns: 300 },
  );
});

test('property: garbage never throws, and 0xFF always resynchronises', () => {
  const valid = '{"execute":"query-status","id":7}';
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 400 }),
        // Valid traffic with bytes flipped: mostly-plausible input.
        fc
          .tuple(
            fc.array(command, { minLength: 1, maxLength: 3 }),
            fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
          )
          .map(([cmds, flips]) => {
            const b = Buffer.from(cmds.map((c) => JSON.stringify(c)).join(''));
            for (const [at, v] of flips) if (b.length > 0) b[at % b.length] = v;
            return new Uint8Array(b);
          }),
      ),
      cuts,
      (garbage, chunking) => {
        const bytes = Buffer.concat([
          Buffer.from(garbage),
          Buffer.from([0xff]),
          Buffer.from(valid),
        ]);
        const out = frame(bytes, chunking, { maxMessageBytes: 256 });
        assert.deepEqual(out.at(-1), { message: { execute: 'query-status', id: 7 } });
      },
    ),
    { numRuns: 500 },
  );
});

test('an oversize message: one error, then the next message parses (any chunking)', () => {
  const big = JSON.stringify({ execute: 'x', arguments: { s: 'y'.repeat(200), o: { '}': '{' } } });
  const next = '{"execute":"query-status","id":1}';
  for (const chunking of [[1], [7], [64], []]) {
    const out = frame(Buffer.from(big + next), chunking, { maxMessageBytes: 100 });
    assert.deepEqual(out, [
      { error: 'JSON token size limit exceeded' },
      { message: { execute: 'query-status', id: 1 } },
    ]);
  }
  // Exactly at the limit is fine.
  const exact = frame(Buffer.from(next), [], { maxMessageBytes: next.length });
  assert.deepEqual(exact, [{ message: { execute: 'query-status', id: 1 } }]);
  // An oversize top-level string or bare token is skipped the same way.
  const str = frame(Buffer.from(`"${'z'.repeat(300)}" ${next}`), [5], { maxMessageBytes: 100 });
  assert.deepEqual(str, [
    { error: 'JSON token size limit exceeded' },
    { message: { execute: 'query-status', id: 1 } },
  ]);
});

test('too deep: one error, the rest of that message skipped, the next one parses', () => {
  const deep = '['.repeat(1025) + ']'.repeat(1025);
  const out = frame(Buffer.from(deep + '{"execute":"a"}'), [100]);
  assert.deepEqual(out, [
    { error: 'JSON nesting depth limit exceeded' },
    { message: { execute: 'a' } },
  ]);
});

test('stray closers and separators at top level are one-byte messages, as in QEMU', () => {
  const out = frame(Buffer.from('} ] , {"execute":"a"}'), [1]);
  assert.deepEqual(out, [
    { error: 'JSON parse error, expecting value' },
    { error: 'JSON parse error, expecting value' },
    { error: 'JSON parse error, expecting value' },
    { message: { execute: 'a' } },
  ]);
});

test('a reset byte inside a message drops it and reports a stray character', () => {
  const out = frame(Buffer.from('{"execute":"a", \xff {"execute":"b"}', 'latin1'), [3]);
  assert.deepEqual(out, [
    { error: "JSON parse error, stray '\ufffd'" },
    { message: { execute: 'b' } },
  ]);
});

test('no newline is needed between messages, and newlines inside strings are data', () => {
  const out = frame(Buffer.from('{"a":"x\\ny"}{"b":"}{"}["c"]'), []);
  assert.deepEqual(out, [{ message: { a: 'x\ny' } }, { message: { b: '}{' } }, { message: ['c'] }]);
});
