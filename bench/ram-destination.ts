/**
 * A destination process for bench/ram-throughput.ts (and anything else that needs a peer in
 * another process before `vfio-migrate run` exists). Prints one JSON line per step on stdout.
 *
 *   ram-destination.ts migrate MiB [prefault]
 *                                    an incoming VM with one RAM block "ram" of MiB MiB,
 *                                    listening on 127.0.0.1; prints {"port"}, then after the
 *                                    migration {"status", "error"?, "sha256"} and exits.
 *                                    "prefault" touches the RAM first (QEMU's -mem-prealloc):
 *                                    the load then pays no first-touch page faults
 *   ram-destination.ts raw BYTES     a plain socket sink: prints {"port"}, reads BYTES bytes,
 *                                    answers one byte and exits
 */
import { createServer } from 'node:net';
import { RunState, VmRunControl } from '../src/guest/index.ts';
import { GuestMemory, MiB } from '../src/memory/index.ts';
import {
  MigrationBlockers,
  MigrationNotifiers,
  SaveVMRegistry,
  createVmMigration,
} from '../src/migration/index.ts';

function say(value: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

async function migrateIncoming(mib: number, prefault: boolean): Promise<void> {
  const memory = GuestMemory.flat([{ idstr: 'ram', size: mib * MiB }]);
  if (prefault) for (const b of memory.blocks) b.fill(0, b.usedLength, 0);
  const runControl = new VmRunControl({ initial: RunState.INMIGRATE });
  const vm = createVmMigration({
    registry: new SaveVMRegistry(),
    memory,
    runControl,
    notifiers: new MigrationNotifiers(),
    blockers: new MigrationBlockers(),
    machineType: 'none',
    options: { capabilities: [{ capability: 'return-path', state: true }] },
  });
  await vm.incoming.start('tcp:127.0.0.1:0');
  const uri = vm.incoming.uri;
  say({ port: uri?.transport === 'tcp' ? uri.port : 0 });
  const status = await vm.incoming.whenFinished();
  say({ status, error: vm.incoming.error?.message, sha256: memory.digest().sha256 });
}

async function rawSink(bytes: number): Promise<void> {
  const server = createServer((sock) => {
    let seen = 0;
    sock.on('data', (chunk: Buffer) => {
      seen += chunk.length;
      if (seen >= bytes) {
        sock.end(Buffer.of(1));
        server.close();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  say({ port: typeof addr === 'object' && addr !== null ? addr.port : 0 });
}

const [mode, arg, flag] = process.argv.slice(2);
const n = Number(arg);
if (!Number.isSafeInteger(n) || n <= 0 || (mode !== 'migrate' && mode !== 'raw')) {
  process.stderr.write('usage: ram-destination.ts migrate MiB [prefault] | raw BYTES\n');
  process.exit(2);
}
await (mode === 'migrate' ? migrateIncoming(n, flag === 'prefault') : rawSink(n));
