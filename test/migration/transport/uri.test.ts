import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  MigrationUriError,
  formatMigrationUri,
  parseMigrationUri,
} from '../../../src/migration/transport/index.ts';

test('QEMU URIs parse to their parts and format back', () => {
  const good: [string, unknown][] = [
    ['tcp:127.0.0.1:4444', { transport: 'tcp', host: '127.0.0.1', port: 4444 }],
    ['tcp:[::1]:0', { transport: 'tcp', host: '::1', port: 0 }],
    ['tcp:[fe80::1%eth0]:5', { transport: 'tcp', host: 'fe80::1%eth0', port: 5 }],
    ['tcp:localhost:65535', { transport: 'tcp', host: 'localhost', port: 65535 }],
    ['tcp::4444', { transport: 'tcp', host: '', port: 4444 }],
    ['unix:/run/mig.sock', { transport: 'unix', path: '/run/mig.sock' }],
    ['file:/tmp/vm.mig', { transport: 'file', path: '/tmp/vm.mig', offset: 0 }],
    ['file:/tmp/a,b,offset=0x1000', { transport: 'file', path: '/tmp/a,b', offset: 4096 }],
  ];
  for (const [uri, parts] of good) {
    assert.deepEqual(parseMigrationUri(uri), parts, uri);
    assert.equal(formatMigrationUri(parseMigrationUri(uri)).replace('4096', '0x1000'), uri);
  }
});

test('bad URIs are refused saying what is wrong', () => {
  const bad: [string, RegExp][] = [
    ['127.0.0.1:4444', /expected tcp:, unix: or file:/],
    ['tcp:127.0.0.1', /port '0.0.1' is not a number|expected tcp:HOST:PORT/],
    ['tcp:host', /expected tcp:HOST:PORT/],
    ['tcp:::1:4444', /IPv6 address must be written in brackets/],
    ['tcp:[::1:4444', /missing '\]'/],
    ['tcp:[1.2.3.4]:80', /'1.2.3.4' is not an IPv6 address/],
    ['tcp:[::1]4444', /expected ':PORT' after '\]'/],
    ['tcp:h:65536', /port '65536' is not a number in 0..65535/],
    ['tcp:h:http', /port 'http'/],
    ['tcp:h:-1', /port '-1'/],
    ['tcp:h:1,ipv4', /tcp options are not supported/],
    ['unix:', /empty socket path/],
    [`unix:/${'x'.repeat(120)}`, /longer than 107 bytes/],
    ['file:', /empty file path/],
    ['file:/x,offset=lots', /offset 'lots' is not a byte count/],
    ['exec:cat > /tmp/x', /the exec: transport is not supported/],
    ['rdma:1.2.3.4:5', /the rdma: transport is not supported/],
    ['ftp:x', /unknown transport 'ftp'/],
  ];
  for (const [uri, err] of bad) {
    assert.throws(
      () => parseMigrationUri(uri),
      (e: unknown) => {
        assert.ok(e instanceof MigrationUriError, uri);
        assert.match(e.message, new RegExp(`^invalid migration URI '`));
        assert.match(e.message, err, uri);
        return true;
      },
    );
  }
});
