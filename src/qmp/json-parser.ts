/**
 * The JSON dialect QMP speaks, parsed the way QEMU parses it (qobject/json-lexer.c and
 * json-parser.c), so that a malformed command gets the same `desc` QEMU would send:
 * "JSON parse error, invalid keyword 'bad'", "... stray '@'", "... duplicate key".
 *
 * QEMU's extensions and restrictions over RFC 8259 are kept: single-quoted strings and the
 * `\'` escape are accepted; duplicate keys, unescaped control characters, lone surrogates and
 * Unicode noncharacters are refused; a number may not continue with `e` after a bare `0`.
 *
 * Like QEMU, the whole message is tokenized first and parsed after, so a lexical error
 * ("stray") wins over a grammar error earlier in the same message. Tokens live in reusable
 * typed arrays: parsing allocates only the values it returns.
 */

export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}

/** QEMU's MAX_NESTING (qobject/json-streamer.c): braces plus brackets open at once. */
export const JSON_MAX_NESTING = 1024;

/** A message that is not valid QMP JSON; `message` is QEMU's error description. */
export class JsonParseError extends Error {
  override readonly name = 'JsonParseError';
}

function parseError(detail: string): JsonParseError {
  return new JsonParseError(`JSON parse error, ${detail}`);
}

export function nestingLimitError(): JsonParseError {
  return new JsonParseError('JSON nesting depth limit exceeded');
}

const Tok = {
  LCURLY: 1,
  RCURLY: 2,
  LSQUARE: 3,
  RSQUARE: 4,
  COMMA: 5,
  COLON: 6,
  STRING: 7,
  /** A string with at least one backslash: decoded on the slow path. */
  STRING_ESCAPED: 8,
  NUMBER: 9,
  KEYWORD: 10,
} as const;

const INITIAL_TOKENS = 256;
/** Past this capacity the token arrays are dropped after use rather than kept for reuse. */
const RETAINED_TOKENS = 1 << 16;

let kinds = new Uint8Array(INITIAL_TOKENS);
let starts = new Int32Array(INITIAL_TOKENS);
let ends = new Int32Array(INITIAL_TOKENS);
let count = 0;

function pushToken(kind: number, start: number, end: number): void {
  if (count === kinds.length) {
    const grownKinds = new Uint8Array(count * 2);
    const grownStarts = new Int32Array(count * 2);
    const grownEnds = new Int32Array(count * 2);
    grownKinds.set(kinds);
    grownStarts.set(starts);
    grownEnds.set(ends);
    kinds = grownKinds;
    starts = grownStarts;
    ends = grownEnds;
  }
  kinds[count] = kind;
  starts[count] = start;
  ends[count] = end;
  count++;
}

function releaseTokens(): void {
  count = 0;
  if (kinds.length > RETAINED_TOKENS) {
    kinds = new Uint8Array(INITIAL_TOKENS);
    starts = new Int32Array(INITIAL_TOKENS);
    ends = new Int32Array(INITIAL_TOKENS);
  }
}

/** U+FDD0..U+FDEF and U+xFFFE/U+xFFFF in every plane: QEMU refuses them in strings. */
function isNoncharacter(cp: number): boolean {
  return (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function stray(s: string, start: number, endInclusive: number): JsonParseError {
  return parseError(`stray '${s.slice(start, Math.min(endInclusive + 1, s.length))}'`);
}

/** QEMU's lexer: fills the token arrays or throws at the first lexical error. */
function tokenize(s: string): void {
  const n = s.length;
  let i = 0;
  while (i < n) {
    const c = s.charCodeAt(i);
    switch (c) {
      case 0x20: // space, \t, \r, \n
      case 0x09:
      case 0x0d:
      case 0x0a:
        i++;
        continue;
      case 0x7b:
        pushToken(Tok.LCURLY, i, ++i);
        continue;
      case 0x7d:
        pushToken(Tok.RCURLY, i, ++i);
        continue;
      case 0x5b:
        pushToken(Tok.LSQUARE, i, ++i);
        continue;
      case 0x5d:
        pushToken(Tok.RSQUARE, i, ++i);
        continue;
      case 0x2c:
        pushToken(Tok.COMMA, i, ++i);
        continue;
      case 0x3a:
        pushToken(Tok.COLON, i, ++i);
        continue;
      case 0x22: // " and '
      case 0x27:
        i = scanString(s, i, c);
        continue;
    }
    if (c === 0x2d || isDigit(c)) {
      i = scanNumber(s, i);
    } else if (c >= 0x61 && c <= 0x7a) {
      let j = i + 1;
      while (j < n && s.charCodeAt(j) >= 0x61 && s.charCodeAt(j) <= 0x7a) j++;
      pushToken(Tok.KEYWORD, i, j);
      i = j;
    } else {
      const cp = s.codePointAt(i) ?? c;
      throw stray(s, i, i + (cp > 0xffff ? 1 : 0));
    }
  }
}

function scanString(s: string, start: number, quote: number): number {
  const n = s.length;
  let escaped = false;
  let j = start + 1;
  for (;;) {
    if (j >= n) throw parseError('premature EOI');
    const c = s.charCodeAt(j);
    if (c === quote) break;
    if (c < 0x20) throw stray(s, start, j);
    if (c === 0x5c) {
      escaped = true;
      j++;
      if (j >= n) throw parseError('premature EOI');
      if (s.charCodeAt(j) < 0x20) throw stray(s, start, j);
    } else if (c >= 0xd800) {
      let cp = c;
      if (c <= 0xdbff && j + 1 < n) {
        const lo = s.charCodeAt(j + 1);
        if (lo >= 0xdc00 && lo <= 0xdfff) {
          cp = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
          j++;
        }
      }
      if (isNoncharacter(cp)) throw parseError('invalid UTF-8 sequence in string');
    }
    j++;
  }
  pushToken(escaped ? Tok.STRING_ESCAPED : Tok.STRING, start, j + 1);
  return j + 1;
}

/** `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, except that `0` takes no exponent. */
function scanNumber(s: string, start: number): number {
  const n = s.length;
  let j = start;
  const at = (k: number): number => (k < n ? s.charCodeAt(k) : -1);
  if (at(j) === 0x2d) {
    j++;
    if (!isDigit(at(j))) throw stray(s, start, j);
  }
  let exponentAllowed = true;
  if (at(j) === 0x30) {
    j++;
    if (isDigit(at(j))) throw stray(s, start, j);
    exponentAllowed = false;
  } else {
    while (isDigit(at(j))) j++;
  }
  if (at(j) === 0x2e) {
    j++;
    if (!isDigit(at(j))) throw stray(s, start, j);
    while (isDigit(at(j))) j++;
    exponentAllowed = true;
  }
  if (exponentAllowed && (at(j) === 0x65 || at(j) === 0x45)) {
    j++;
    if (at(j) === 0x2b || at(j) === 0x2d) j++;
    if (!isDigit(at(j))) throw stray(s, start, j);
    while (isDigit(at(j))) j++;
  }
  pushToken(Tok.NUMBER, start, j);
  return j;
}

function hex4(s: string, at: number, end: number): number {
  if (at + 4 > end) return -1;
  let v = 0;
  for (let k = at; k < at + 4; k++) {
    const c = s.charCodeAt(k);
    let d: number;
    if (isDigit(c)) d = c - 0x30;
    else if (c >= 0x61 && c <= 0x66) d = c - 0x61 + 10;
    else if (c >= 0x41 && c <= 0x46) d = c - 0x41 + 10;
    else return -1;
    v = (v << 4) | d;
  }
  return v;
}

const SIMPLE_ESCAPES: Readonly<Record<string, string>> = {
  '"': '"',
  "'": "'",
  '\\': '\\',
  '/': '/',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
};

/** Decodes a string token that contains escapes (json-parser.c parse_string). */
function decodeEscaped(s: string, start: number, end: number): string {
  const last = end - 1; // the closing quote
  let out = '';
  let run = start + 1;
  let j = run;
  while (j < last) {
    if (s.charCodeAt(j) !== 0x5c) {
      j++;
      continue;
    }
    out += s.slice(run, j);
    const backslash = j;
    const e = s[j + 1] ?? '';
    if (e !== 'u') {
      const simple = SIMPLE_ESCAPES[e];
      if (simple === undefined) throw parseError('invalid escape sequence in string');
      out += simple;
      j += 2;
    } else {
      let cp = hex4(s, j + 2, last);
      j += 6;
      if (cp >= 0xd800 && cp <= 0xdbff && s.charCodeAt(j) === 0x5c && s[j + 1] === 'u') {
        const trailing = hex4(s, j + 2, last);
        if (trailing >= 0xdc00 && trailing <= 0xdfff) {
          cp = 0x10000 + ((cp - 0xd800) << 10) + (trailing - 0xdc00);
          j += 6;
        } else {
          cp = -1;
        }
      }
      if (cp < 0 || (cp >= 0xd800 && cp <= 0xdfff) || isNoncharacter(cp)) {
        const seq = s.slice(backslash, Math.min(backslash + 6, end));
        throw parseError(`${seq} is not a valid Unicode character`);
      }
      out += String.fromCodePoint(cp);
    }
    run = j;
  }
  return out + s.slice(run, last);
}

function setMember(obj: JsonObject, key: string, value: JsonValue): void {
  if (key === '__proto__') {
    // An own data property, as JSON.parse makes it, never the prototype setter.
    Object.defineProperty(obj, key, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  } else {
    obj[key] = value;
  }
}

/** Recursive descent over the token arrays (json-parser.c), first error wins. */
class TokenParser {
  readonly #s: string;
  #t = 0;

  constructor(s: string) {
    this.#s = s;
  }

  document(): JsonValue {
    const value = this.#value(0);
    if (this.#t < count) throw stray(this.#s, starts[this.#t]!, ends[this.#t]! - 1);
    return value;
  }

  #need(): number {
    if (this.#t >= count) throw parseError('premature EOI');
    return kinds[this.#t]!;
  }

  #value(depth: number): JsonValue {
    const kind = this.#need();
    const t = this.#t;
    switch (kind) {
      case Tok.LCURLY:
        return this.#object(depth + 1);
      case Tok.LSQUARE:
        return this.#array(depth + 1);
      case Tok.STRING:
        this.#t++;
        return this.#s.slice(starts[t]! + 1, ends[t]! - 1);
      case Tok.STRING_ESCAPED:
        this.#t++;
        return decodeEscaped(this.#s, starts[t]!, ends[t]!);
      case Tok.NUMBER:
        this.#t++;
        return Number(this.#s.slice(starts[t], ends[t]));
      case Tok.KEYWORD: {
        this.#t++;
        const word = this.#s.slice(starts[t], ends[t]);
        if (word === 'true') return true;
        if (word === 'false') return false;
        if (word === 'null') return null;
        throw parseError(`invalid keyword '${word}'`);
      }
      default:
        throw parseError('expecting value');
    }
  }

  #object(depth: number): JsonObject {
    if (depth > JSON_MAX_NESTING) throw nestingLimitError();
    this.#t++;
    const obj: JsonObject = {};
    if (this.#need() === Tok.RCURLY) {
      this.#t++;
      return obj;
    }
    for (;;) {
      this.#need();
      const key = this.#value(depth);
      if (typeof key !== 'string') throw parseError('key is not a string in object');
      if (this.#need() !== Tok.COLON) throw parseError('missing : in object pair');
      this.#t++;
      const value = this.#value(depth);
      if (Object.hasOwn(obj, key)) throw parseError('duplicate key');
      setMember(obj, key, value);
      const sep = this.#need();
      this.#t++;
      if (sep === Tok.RCURLY) return obj;
      if (sep !== Tok.COMMA) throw parseError('expected separator in dict');
    }
  }

  #array(depth: number): JsonValue[] {
    if (depth > JSON_MAX_NESTING) throw nestingLimitError();
    this.#t++;
    const list: JsonValue[] = [];
    if (this.#need() === Tok.RSQUARE) {
      this.#t++;
      return list;
    }
    for (;;) {
      list.push(this.#value(depth));
      const sep = this.#need();
      this.#t++;
      if (sep === Tok.RSQUARE) return list;
      if (sep !== Tok.COMMA) throw parseError('expected separator in list');
    }
  }
}

/** Parses one complete JSON text; throws JsonParseError with QEMU's description. */
export function parseJsonText(text: string): JsonValue {
  try {
    tokenize(text);
    return new TokenParser(text).document();
  } finally {
    releaseTokens();
  }
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const lenientUtf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/**
 * Parses one message as received. Bytes that are not UTF-8 are "invalid UTF-8 sequence in
 * string" inside a string and a stray U+FFFD outside one, as in QEMU.
 */
export function parseJsonBytes(bytes: Uint8Array): JsonValue {
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    parseJsonText(lenientUtf8.decode(bytes)); // throws if the damage is outside strings
    throw parseError('invalid UTF-8 sequence in string');
  }
  return parseJsonText(text);
}

export function isJsonObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
