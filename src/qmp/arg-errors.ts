/**
 * Command argument errors in QEMU's words (qapi/qobject-input-visitor.c, qapi/qmp/qerror.h),
 * translated from the first zod issue, since QEMU also stops at the first problem and visits
 * members in schema order:
 *   missing member        -> "Parameter 'uri' is missing"
 *   wrong JSON type       -> "Invalid parameter type for 'uri', expected: string"
 *   unknown member        -> "Parameter 'bogus' is unexpected"
 *   value not in an enum  -> "Parameter 'capability' does not accept value 'nonsense'"
 * Nested members are named as QEMU names them: `capabilities[0].state`.
 *
 * A `refine` message is sent verbatim, so a command can reproduce a QEMU sentence exactly,
 * e.g. "Parameter 'downtime_limit' expects an integer in the range of 0 to (2000 * 1000) ms".
 */
import type { z } from 'zod';

type Issue = z.core.$ZodIssue;

/** zod's type names -> QEMU's (QERR_INVALID_PARAMETER_TYPE's "expected:" part). */
const QAPI_TYPE_NAMES: Readonly<Record<string, string>> = {
  int: 'integer',
  bigint: 'integer',
  number: 'number',
  string: 'string',
  boolean: 'boolean',
  array: 'array',
  object: 'object',
  null: 'null',
  tuple: 'array',
  record: 'object',
  map: 'object',
};

function qapiTypeName(expected: string): string {
  return QAPI_TYPE_NAMES[expected] ?? expected;
}

export function formatArgumentPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out;
}

function showValue(value: unknown): string {
  return typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value));
}

function bound(
  kind: 'least' | 'most',
  origin: string,
  limit: number | bigint,
  inclusive: boolean | undefined,
): string {
  if (origin === 'string')
    return `${kind === 'least' ? 'at least' : 'at most'} ${limit} characters`;
  if (origin === 'array' || origin === 'set') {
    return `${kind === 'least' ? 'at least' : 'at most'} ${limit} elements`;
  }
  const op =
    kind === 'least' ? (inclusive === false ? '>' : '>=') : inclusive === false ? '<' : '<=';
  return `a value ${op} ${limit}`;
}

/** The branch a union failure is best explained by: the one whose first issue is deepest. */
function describeUnion(
  issue: Extract<Issue, { code: 'invalid_union' }>,
  path: readonly PropertyKey[],
): string {
  const firsts = issue.errors.map((branch) => branch[0]).filter((i) => i !== undefined);
  const shallowTypes = firsts.every((i) => i.code === 'invalid_type' && i.path.length === 0);
  if (firsts.length === 0 || shallowTypes) {
    const expected = [...new Set(firsts.map((i) => (i.code === 'invalid_type' ? i.expected : '')))];
    return `Invalid parameter type for '${formatArgumentPath(path)}', expected: ${expected
      .map(qapiTypeName)
      .join(' or ')}`;
  }
  const deepest = firsts.reduce((a, b) => (b.path.length > a.path.length ? b : a));
  return describeIssue(deepest, [...path, ...deepest.path]);
}

/** Issues raised on a member that is absent (JSON has no `undefined`, so absent it is). */
const MISSING_CODES: ReadonlySet<string> = new Set([
  'invalid_type',
  'invalid_value',
  'invalid_union',
]);

function describeIssue(issue: Issue, path: readonly PropertyKey[]): string {
  const name = formatArgumentPath(path);
  if (issue.input === undefined && MISSING_CODES.has(issue.code)) {
    return `Parameter '${name}' is missing`;
  }
  switch (issue.code) {
    case 'invalid_type':
      return `Invalid parameter type for '${name}', expected: ${qapiTypeName(issue.expected)}`;
    case 'unrecognized_keys':
      return `Parameter '${formatArgumentPath([...path, issue.keys[0] ?? ''])}' is unexpected`;
    case 'invalid_value': {
      const allStrings = issue.values.every((v) => typeof v === 'string');
      if (allStrings && typeof issue.input !== 'string') {
        return `Invalid parameter type for '${name}', expected: string`;
      }
      return `Parameter '${name}' does not accept value '${showValue(issue.input)}'`;
    }
    case 'invalid_union':
      return describeUnion(issue, path);
    case 'too_small':
      return `Parameter '${name}' expects ${bound('least', issue.origin, issue.minimum, issue.inclusive)}`;
    case 'too_big':
      return `Parameter '${name}' expects ${bound('most', issue.origin, issue.maximum, issue.inclusive)}`;
    case 'not_multiple_of':
      return `Parameter '${name}' expects a multiple of ${issue.divisor}`;
    case 'invalid_format':
      return `Parameter '${name}' expects the ${issue.format} format`;
    case 'custom':
      return issue.message;
    default:
      return `Parameter '${name}' is invalid: ${issue.message}`;
  }
}

/** QEMU's description of the first argument problem zod found. */
export function describeArgumentError(error: z.ZodError): string {
  const first = error.issues[0];
  if (first === undefined) return 'Invalid arguments';
  return describeIssue(first, first.path);
}
