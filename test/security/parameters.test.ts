/** The tls-* migration parameters: accepted as QEMU accepts them, null turning them off. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MigrationOptions } from '../../src/migration/index.ts';

test('tls-creds, tls-hostname and tls-authz are set, queried and reset with null', () => {
  const o = new MigrationOptions({ parameters: { 'tls-creds': 'tls0' } });
  assert.equal(o.parameters['tls-creds'], 'tls0', 'an id is accepted before its object exists');
  o.setParameters({ 'tls-hostname': 'dst.example', 'tls-authz': 'auth0' });
  const q = o.queryParameters();
  assert.deepEqual(
    [q['tls-creds'], q['tls-hostname'], q['tls-authz']],
    ['tls0', 'dst.example', 'auth0'],
  );
  o.setParameters({ 'tls-creds': null, 'tls-hostname': null, 'tls-authz': null });
  const off = o.queryParameters();
  assert.deepEqual([off['tls-creds'], off['tls-hostname'], off['tls-authz']], ['', '', '']);
  assert.throws(() => o.setParameters({ 'tls-authz': 1 }), {
    message: "Invalid parameter type for 'tls-authz', expected: string",
  });
  assert.throws(() => o.setParameters({ 'downtime-limit': null }), {
    message: "Invalid parameter type for 'downtime-limit', expected: integer",
  });
});
