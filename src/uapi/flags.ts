/** `vfio_device_feature_migration.flags` (vfio-uapi.md §1.3). */
export const VFIO_MIGRATION_STOP_COPY = 1;
export const VFIO_MIGRATION_P2P = 2;
export const VFIO_MIGRATION_PRE_COPY = 4;

export type MigrationFlags = number;

/** The four combinations the header defines; anything else is "to be defined". */
export const LEGAL_FLAG_SETS: readonly MigrationFlags[] = [
  VFIO_MIGRATION_STOP_COPY,
  VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P,
  VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_PRE_COPY,
  VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY,
];

export function isLegalFlagSet(flags: number): boolean {
  return LEGAL_FLAG_SETS.includes(flags);
}

const FLAG_WORDS: readonly [string, number][] = [
  ['stop-copy', VFIO_MIGRATION_STOP_COPY],
  ['p2p', VFIO_MIGRATION_P2P],
  ['pre-copy', VFIO_MIGRATION_PRE_COPY],
];

/** "stop-copy,p2p,pre-copy" -> 7. Refuses unknown words and combinations the uAPI leaves undefined. */
export function parseFlags(text: string): MigrationFlags {
  let flags = 0;
  for (const raw of text.split(/[,|+]/)) {
    const word = raw.trim().toLowerCase().replaceAll('_', '-');
    if (word === '') continue;
    const hit = FLAG_WORDS.find(([name]) => name === word);
    if (!hit) {
      throw new Error(`unknown migration flag "${raw.trim()}" (expected stop-copy, p2p, pre-copy)`);
    }
    flags |= hit[1];
  }
  if (!isLegalFlagSet(flags)) {
    throw new Error(
      `migration flags "${text}" are not a defined combination: stop-copy is mandatory`,
    );
  }
  return flags;
}

/** 7 -> "STOP_COPY|P2P|PRE_COPY", the spelling of vfio-uapi-table.json. */
export function flagsName(flags: MigrationFlags): string {
  const parts: string[] = [];
  if (flags & VFIO_MIGRATION_STOP_COPY) parts.push('STOP_COPY');
  if (flags & VFIO_MIGRATION_P2P) parts.push('P2P');
  if (flags & VFIO_MIGRATION_PRE_COPY) parts.push('PRE_COPY');
  return parts.join('|') || '0';
}
