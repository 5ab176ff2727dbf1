/**
 * The configuration section both sides agree on (qemu-migration.md §1.1): the machine type,
 * the target page bits (x86: 12, which is also the minimum, so never sent) and the validated
 * capabilities that are on. `send-configuration` off means neither side has one.
 */
import { TARGET_PAGE_BITS } from '../../memory/page.ts';
import { VALIDATED_CAPABILITIES } from '../options/index.ts';
import type { MigrationOptions } from '../options/index.ts';
import type { LocalConfiguration, MigrationConfiguration } from '../stream/index.ts';

/** x86's minimum; a target whose page bits equal it does not send the subsection. */
export const TARGET_PAGE_BITS_MIN = 12;

function enabledValidated(options: MigrationOptions): string[] {
  return VALIDATED_CAPABILITIES.filter((c) => options.capability(c));
}

/** What the source writes after the header, or null. */
export function sourceConfiguration(
  machineType: string,
  options: MigrationOptions,
): MigrationConfiguration | null {
  if (!options.properties['send-configuration']) return null;
  const cfg: MigrationConfiguration = { machineType };
  if (TARGET_PAGE_BITS !== TARGET_PAGE_BITS_MIN) cfg.targetPageBits = TARGET_PAGE_BITS;
  const caps = enabledValidated(options);
  if (caps.length > 0) cfg.capabilities = caps;
  return cfg;
}

/** What the destination checks the received section against, or null. */
export function localConfiguration(
  machineType: string,
  options: MigrationOptions,
): LocalConfiguration | null {
  if (!options.properties['send-configuration']) return null;
  return {
    machineType,
    targetPageBits: TARGET_PAGE_BITS,
    targetPageBitsMin: TARGET_PAGE_BITS_MIN,
    validatedCapabilities: VALIDATED_CAPABILITIES,
    enabledCapabilities: enabledValidated(options),
  };
}
