/**
 * User-creatable objects: options from JSON and from `-object` strings, QEMU's QAPI messages,
 * object-add / object-del on the container.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  OBJECT_STRING_MAX,
  QAuthZList,
  UserObjects,
  parseObjectOptions,
  parseObjectString,
} from '../../src/security/index.ts';

test('-object strings: implied qom-type, ",," escapes, dotted keys build lists of structs', () => {
  assert.deepEqual(
    parseObjectString(
      'authz-list,id=auth0,policy=deny,rules.0.match=C=GB,,CN=source,rules.0.policy=allow,' +
        'rules.1.match=*,,CN=x*,rules.1.policy=allow,rules.1.format=glob',
    ),
    {
      'qom-type': 'authz-list',
      id: 'auth0',
      policy: 'deny',
      rules: {
        0: { match: 'C=GB,CN=source', policy: 'allow' },
        1: { match: '*,CN=x*', policy: 'allow', format: 'glob' },
      },
    },
  );
  assert.deepEqual(parseObjectString('tls-creds-x509,id=t,dir=/a=b'), {
    'qom-type': 'tls-creds-x509',
    id: 't',
    dir: '/a=b',
  });
});

test('-object strings: malformed input is refused with what and where', () => {
  const bad: [string, RegExp][] = [
    ['tls-creds-x509,id=a,id=b', /Parameter 'id' is set twice/],
    ['authz-list,id=a,rules=x,rules.0.match=y', /Parameter 'rules' used inconsistently/],
    ['authz-list,id=a,rules.0.match=y,rules=x', /Parameter 'rules' is set twice|inconsistently/],
    ['tls-creds-x509,id=a,noequals', /Expected '=' after parameter 'noequals'/],
    ['tls-creds-x509,id=a,b..c=1', /Invalid parameter 'b\.\.c'/],
    ['x'.repeat(OBJECT_STRING_MAX + 1), /longer than/],
  ];
  for (const [text, message] of bad) assert.throws(() => parseObjectString(text), message, text);
});

test('options: JSON and -object strings give the same result, with QEMU defaults', () => {
  const fromJson = parseObjectOptions({
    'qom-type': 'tls-creds-x509',
    id: 'tls0',
    dir: '/etc/pki/qemu',
    endpoint: 'server',
  });
  const fromString = parseObjectOptions('tls-creds-x509,id=tls0,dir=/etc/pki/qemu,endpoint=server');
  assert.deepEqual(fromString, fromJson);
  assert.deepEqual(fromJson, {
    'qom-type': 'tls-creds-x509',
    id: 'tls0',
    dir: '/etc/pki/qemu',
    endpoint: 'server',
    verifyPeer: true,
    sanityCheck: true,
  });
  assert.equal(
    (parseObjectOptions('tls-creds-x509,id=t,verify-peer=off') as { verifyPeer: boolean })
      .verifyPeer,
    false,
  );
  const list = parseObjectOptions('authz-list,id=a,rules.0.match=CN=x,rules.0.policy=allow');
  assert.deepEqual(list, {
    'qom-type': 'authz-list',
    id: 'a',
    policy: 'deny',
    rules: [{ match: 'CN=x', policy: 'allow', format: 'exact' }],
  });
});

test("options: QEMU's messages for every kind of bad property", () => {
  const bad: [unknown, string][] = [
    [{ id: 'a' }, "Parameter 'qom-type' is missing"],
    [{ 'qom-type': 'secret', id: 'a' }, "Parameter 'qom-type' does not accept value 'secret'"],
    [{ 'qom-type': 'authz-simple' }, "Parameter 'id' is missing"],
    [{ 'qom-type': 'authz-simple', id: '0abc', identity: 'x' }, "Parameter 'id' expects an identifier"],
    [{ 'qom-type': 'authz-simple', id: 'a' }, "Parameter 'identity' is missing"],
    [{ 'qom-type': 'authz-simple', id: 'a', identity: 3 }, "Invalid parameter type for 'identity', expected: string"],
    [{ 'qom-type': 'authz-simple', id: 'a', identity: 'x', dir: '/' }, "Parameter 'dir' is unexpected"],
    [{ 'qom-type': 'tls-creds-x509', id: 'a', endpoint: 'peer' }, "Parameter 'endpoint' does not accept value 'peer'"],
    [{ 'qom-type': 'tls-creds-x509', id: 'a', 'verify-peer': 'yes' }, "Invalid parameter type for 'verify-peer', expected: boolean"],
    ['tls-creds-x509,id=a,verify-peer=maybe', "Parameter 'verify-peer' expects 'on' or 'off'"],
    ['tls-creds-x509,id=a,priority=NORMAL', "Parameter 'priority' is not supported"],
    [{ 'qom-type': 'authz-list', id: 'a', rules: [{ match: 'x' }] }, "Parameter 'rules[0].policy' is missing"],
    [{ 'qom-type': 'authz-list', id: 'a', rules: [{ match: 'x', policy: 'allow', format: 'regex' }] }, "Parameter 'rules[0].format' does not accept value 'regex'"],
    [{ 'qom-type': 'authz-list', id: 'a', rules: [{ match: 'x', policy: 'allow', extra: 1 }] }, "Parameter 'rules[0].extra' is unexpected"],
    [{ 'qom-type': 'authz-list', id: 'a', rules: {} }, "Invalid parameter type for 'rules', expected: array"],
    ['authz-list,id=a,rules.1.match=x,rules.1.policy=allow', "Parameter 'rules.0' missing"],
    [[], "Invalid parameter type for 'arguments', expected: object"],
  ]; // prettier-ignore
  for (const [spec, message] of bad) {
    assert.throws(
      () => parseObjectOptions(spec),
      (err: Error) => {
        assert.ok(err.message.startsWith(message), `${JSON.stringify(spec)}: ${err.message}`);
        return true;
      },
    );
  }
});

test('object-add / object-del: ids are unique, deletion of an unknown id is refused', () => {
  const objects = new UserObjects();
  const a = objects.add('authz-list,id=auth0,rules.0.match=CN=x,rules.0.policy=allow');
  assert.ok(a instanceof QAuthZList);
  assert.equal(objects.get('auth0'), a);
  assert.throws(() => objects.add({ 'qom-type': 'authz-simple', id: 'auth0', identity: 'x' }), {
    message: "attempt to add duplicate property 'auth0' to object (type 'container')",
  });
  objects.del('auth0');
  assert.equal(objects.get('auth0'), undefined);
  assert.throws(() => objects.del('auth0'), { message: "object 'auth0' not found" });
  assert.deepEqual(objects.list(), []);
});
