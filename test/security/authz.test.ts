/** authz-simple and authz-list decisions, and GLib's simple glob. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { QAuthZList, QAuthZSimple, UserObjects, globMatch } from '../../src/security/index.ts';

test('authz-simple allows exactly its identity', () => {
  const a = new QAuthZSimple('auth0', 'C=GB,O=Example Org,CN=source');
  assert.equal(a.isAllowed('C=GB,O=Example Org,CN=source'), true);
  assert.equal(a.isAllowed('C=GB,O=Example Org,CN=source2'), false);
  assert.equal(a.isAllowed('c=gb,o=example org,cn=source'), false, 'no case folding');
});

test('authz-list: the first matching rule decides, else the list policy (deny by default)', () => {
  const list = new QAuthZList('auth0', 'deny', [
    { match: 'CN=evil', policy: 'deny' },
    { match: '*,CN=src*', policy: 'allow', format: 'glob' },
    { match: 'C=GB,CN=srcbad', policy: 'deny' },
    { match: 'C=GB,CN=ok', policy: 'allow' },
  ]);
  assert.equal(list.isAllowed('C=GB,CN=src1'), true);
  assert.equal(list.isAllowed('C=GB,CN=srcbad'), true, 'the glob rule comes first');
  assert.equal(list.isAllowed('C=GB,CN=ok'), true);
  assert.equal(list.isAllowed('CN=evil'), false);
  assert.equal(list.isAllowed('C=GB,CN=other'), false, 'no rule: policy deny');
  const open = new QAuthZList('auth1', 'allow', [{ match: 'CN=evil', policy: 'deny' }]);
  assert.equal(open.isAllowed('CN=anyone'), true);
  assert.equal(open.isAllowed('CN=evil'), false);
});

test('globMatch: * and ? as g_pattern_match_simple, no escapes', () => {
  const cases: [string, string, boolean][] = [
    ['*', '', true],
    ['*', 'anything', true],
    ['?', '', false],
    ['?', 'é', true],
    ['a*b', 'ab', true],
    ['a*b', 'aXXb', true],
    ['a*b', 'aXXbc', false],
    ['*a*b*', 'xxaxxbxx', true],
    ['a?c', 'abc', true],
    ['a?c', 'ac', false],
    ['\\*', '\\x', true],
    ['CN=*,O=Example', 'CN=x,O=Example', true],
  ];
  for (const [p, t, want] of cases) assert.equal(globMatch(p, t), want, `${p} ~ ${t}`);
});

test('globMatch agrees with a regular-expression reference (property)', () => {
  const alphabet = fc.constantFrom('a', 'b', '*', '?');
  const reference = (p: string, t: string) =>
    new RegExp(
      `^${[...p].map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c)).join('')}$`,
      's',
    ).test(t);
  fc.assert(
    fc.property(
      fc.array(alphabet, { maxLength: 8 }).map((a) => a.join('')),
      fc.array(fc.constantFrom('a', 'b'), { maxLength: 10 }).map((a) => a.join('')),
      (p, t) => globMatch(p, t) === reference(p, t),
    ),
    { numRuns: 2000 },
  );
});

test('isAllowedById: QEMU message for a missing id', () => {
  const objects = new UserObjects();
  objects.add({ 'qom-type': 'authz-simple', id: 'auth0', identity: 'CN=a' });
  assert.equal(objects.isAllowedById('auth0', 'CN=a'), true);
  assert.equal(objects.isAllowedById('auth0', 'CN=b'), false);
  assert.throws(() => objects.isAllowedById('nope', 'CN=a'), {
    message: 'Cannot find QAuthZ object ID nope',
  });
});
