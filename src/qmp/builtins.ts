/**
 * The commands every QMP server has, whatever the VM behind it: qmp_capabilities,
 * query-version, query-commands and quit (QEMU's qapi/control.json and misc.json).
 */
import { z } from 'zod';
import { QmpError, QmpErrorClass } from './errors.ts';
import type { QmpCommandRegistry } from './registry.ts';
import type { QmpVersionInfo } from './wire.ts';

/** The capabilities offered in the greeting; "oob" is the only one QEMU defines. */
export const QMP_CAPABILITIES = ['oob'] as const;

export interface BuiltinOptions {
  readonly version: QmpVersionInfo;
  /** Runs after the reply to `quit` has been written. */
  readonly onQuit: () => void | Promise<void>;
}

export function registerBuiltins(registry: QmpCommandRegistry, options: BuiltinOptions): void {
  registry.register('qmp_capabilities', {
    args: z.object({ enable: z.array(z.enum(QMP_CAPABILITIES)).optional() }),
    allowedBeforeNegotiation: true,
    handler({ enable }, { session }) {
      if (session.negotiated) {
        throw new QmpError(
          QmpErrorClass.CommandNotFound,
          'Capabilities negotiation is already complete, command ignored',
        );
      }
      session.negotiated = true;
      session.oob = enable?.includes('oob') ?? false;
      return {};
    },
  });

  registry.register('query-version', {
    handler: () => options.version,
  });

  registry.register('query-commands', {
    handler: () => registry.names().map((name) => ({ name })),
  });

  registry.register('quit', {
    handler(_args, ctx) {
      ctx.afterReply(options.onQuit);
      return {};
    },
  });
}
