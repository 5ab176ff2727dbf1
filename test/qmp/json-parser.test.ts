/**
 * The QMP JSON dialect: every error text below is what QEMU 7.2.22 (Debian
 * 1:7.2+dfsg-7+deb12u18) answered to the same bytes, and valid JSON parses exactly as
 * JSON.parse reads it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  JSON_MAX_NESTING,
  JsonParseError,
  parseJsonBytes,
  parseJsonText,
} from '../../src/qmp/json-parser.ts';

function descOf(input: string | Buffer): string {
  try {
    if (typeof input === 'string') parseJsonText(input);
    else parseJsonBytes(input);
  } catch (err) {
    assert.ok(err instanceof JsonParseError, `not a JsonParseError: ${String(err)}`);
    return err.message;
  }
  assert.fail(`parsed without error: ${String(input)}`);
}

const QEMU_ERRORS: readonly (readonly [string, string])[] = [
  ['{"execute":"query-status","id":@}', "JSON parse error, stray '@'"],
  ['{"execute":"query-status","id":01}', "JSON parse error, stray '01'"],
  ['{"a":1,"a":2}', 'JSON parse error, duplicate key'],
  ['{"execute":"x","id":"\\x"}', 'JSON parse error, invalid escape sequence in string'],
  ['["\\ud800"]', 'JSON parse error, \\ud800 is not a valid Unicode character'],
  ['["\\u12G4"]', 'JSON parse error, \\u12G4 is not a valid Unicode character'],
  ['["\\ud800\\u0041"]', 'JSON parse error, \\ud800 is not a valid Unicode character'],
  ['["\\udc00"]', 'JSON parse error, \\udc00 is not a valid Unicode character'],
  ['["\\uFFFE"]', 'JSON parse error, \\uFFFE is not a valid Unicode character'],
  ['["\ufffe"]', 'JSON parse error, invalid UTF-8 sequence in string'],
  ['{"execute":"x","id":[1 2]}', 'JSON parse error, expected separator in list'],
  ['{"execute":"x","id":[1,]}', 'JSON parse error, expecting value'],
  ['{"execute" "query-status"}', 'JSON parse error, missing : in object pair'],
  ['{1:2}', 'JSON parse error, key is not a string in object'],
  ['{"execute":"query-status",}', 'JSON parse error, expecting value'],
  ['{bad json}', "JSON parse error, invalid keyword 'bad'"],
  ['[tru]', "JSON parse error, invalid keyword 'tru'"],
  ['[True]', "JSON parse error, stray 'T'"],
  ['[-]', "JSON parse error, stray '-]'"],
  ['[1.]', "JSON parse error, stray '1.]'"],
  ['[1e]', "JSON parse error, stray '1e]'"],
  ['[-01]', "JSON parse error, stray '-01'"],
  ['[0e5]', 'JSON parse error, expected separator in list'],
  ['[1x]', 'JSON parse error, expected separator in list'],
  ['{"execute":"x","id":"a\tb"}', `JSON parse error, stray '"a\t'`],
  ['}', 'JSON parse error, expecting value'],
  [']', 'JSON parse error, expecting value'],
];

test('malformed messages get QEMU 7.2 error descriptions', () => {
  for (const [input, desc] of QEMU_ERRORS) assert.equal(descOf(input), desc, input);
});

test('bytes that are not UTF-8: in a string vs. outside one, as QEMU reports them', () => {
  const inString = [[0x80], [0xc3], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80]];
  for (const bad of inString) {
    const msg = Buffer.concat([Buffer.from('["'), Buffer.from(bad), Buffer.from('"]')]);
    assert.equal(descOf(msg), 'JSON parse error, invalid UTF-8 sequence in string');
  }
  assert.equal(descOf(Buffer.from([0x5b, 0x80, 0x5d])), "JSON parse error, stray '\ufffd'");
});

test('QEMU extensions and value details', () => {
  assert.deepEqual(parseJsonText(`{'execute':'query-status','id':'x}'}`), {
    execute: 'query-status',
    id: 'x}',
  });
  assert.deepEqual(parseJsonText(`["\\'", '"', '\\'']`), ["'", '"', "'"]);
  assert.equal(parseJsonText('1.5e3'), 1500);
  assert.equal(parseJsonText('1E+2'), 100);
  assert.equal(parseJsonText('-0.25'), -0.25);
  assert.equal(parseJsonText('18446744073709551616'), 18446744073709551616);
  assert.equal(parseJsonText('"\\u0000"'), '\0');
  assert.equal(parseJsonText('"\\ud83d\\ude00 \\/\\b\\f\\n\\r\\t"'), '\u{1f600} /\b\f\n\r\t');
  assert.equal(parseJsonBytes(Buffer.from('"\u{1f600}é"')), '\u{1f600}é');
  assert.deepEqual(parseJsonText(' \r\n\t{ } '), {});
});

test('"__proto__" is an own member, as JSON.parse makes it, and pollutes nothing', () => {
  const text = '{"__proto__":{"polluted":true},"a":1}';
  const value = parseJsonText(text);
  assert.deepEqual(value, JSON.parse(text));
  assert.equal(Object.getPrototypeOf(value), Object.prototype);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  assert.equal(descOf('{"__proto__":1,"__proto__":2}'), 'JSON parse error, duplicate key');
});

test('nesting is bounded at QEMU MAX_NESTING', () => {
  const ok = '['.repeat(JSON_MAX_NESTING) + ']'.repeat(JSON_MAX_NESTING);
  assert.ok(Array.isArray(parseJsonText(ok)));
  const deep = '['.repeat(JSON_MAX_NESTING + 1) + ']'.repeat(JSON_MAX_NESTING + 1);
  assert.equal(descOf(deep), 'JSON nesting depth limit exceeded');
});

test('large messages parse, and the parser stays usable after them', () => {
  const big = `[${Array.from({ length: 200_000 }, (_, i) => i).join(',')}]`;
  const value = parseJsonText(big) as number[];
  assert.equal(value.length, 200_000);
  assert.equal(value[199_999], 199_999);
  assert.deepEqual(parseJsonText('{"a":[1,"b"]}'), { a: [1, 'b'] });
});

/** QEMU refuses Unicode noncharacters; JSON.stringify does not avoid them. */
function hasNoncharacter(s: string): boolean {
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if ((cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe) return true;
  }
  return false;
}

test('property: any JSON text parses exactly as JSON.parse reads it', () => {
  fc.assert(
    fc.property(
      fc.jsonValue({ stringUnit: fc.constantFrom('grapheme', 'binary-ascii') as never }),
      (value) => {
        const text = JSON.stringify(value);
        fc.pre(!hasNoncharacter(text));
        assert.deepEqual(parseJsonText(text), JSON.parse(text));
        assert.deepEqual(parseJsonBytes(Buffer.from(text)), JSON.parse(text));
      },
    ),
    { numRuns: 300 },
  );
});

test('property: arbitrary text never throws anything but JsonParseError', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (text) => {
      try {
        parseJsonText(text);
      } catch (err) {
        assert.ok(err instanceof JsonParseError, String(err));
        assert.match(err.message, /^JSON (parse error, |nesting depth)/);
      }
    }),
    { numRuns: 500 },
  );
});
