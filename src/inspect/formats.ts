/**
 * Which payload formats `inspect` understands, chosen by the START/FULL header that binds an
 * entry: its idstr and its version (a payload layout belongs to one version).
 */
import { RAM_SECTION_IDSTR, RAM_SECTION_VERSION_ID } from '../migration/ram/format.ts';
import type { MigrationConfiguration, SectionStartHeader } from '../migration/stream/index.ts';
import type { EntryDecoder } from './entry.ts';
import { RamEntryDecoder, ramFormatOf } from './payload/ram.ts';
import { VFIO_SECTION_VERSION_ID, VfioEntryDecoder, isVfioIdstr } from './payload/vfio.ts';
import {
  GLOBALSTATE_IDSTR,
  GLOBALSTATE_VERSION_ID,
  GlobalStateDecoder,
  TIMER_IDSTR,
  TIMER_VERSION_ID,
  TimerDecoder,
} from './payload/vmstate.ts';
import type { PayloadFormat } from './report.ts';

interface KnownFormat {
  format: PayloadFormat;
  versionId: number;
  matches(idstr: string): boolean;
  create(cfg: MigrationConfiguration | null): EntryDecoder;
}

const KNOWN_FORMATS: readonly KnownFormat[] = [
  {
    format: 'ram',
    versionId: RAM_SECTION_VERSION_ID,
    matches: (idstr) => idstr === RAM_SECTION_IDSTR,
    create: (cfg) => new RamEntryDecoder(ramFormatOf(cfg)),
  },
  {
    format: 'vfio',
    versionId: VFIO_SECTION_VERSION_ID,
    matches: isVfioIdstr,
    create: () => new VfioEntryDecoder(),
  },
  {
    format: 'globalstate',
    versionId: GLOBALSTATE_VERSION_ID,
    matches: (idstr) => idstr === GLOBALSTATE_IDSTR,
    create: () => new GlobalStateDecoder(),
  },
  {
    format: 'timer',
    versionId: TIMER_VERSION_ID,
    matches: (idstr) => idstr === TIMER_IDSTR,
    create: () => new TimerDecoder(),
  },
];

/**
 * The decoder for the entry `h` names, or why there is none: "unknown payload format", with
 * the known version when only the version differs. Throws when the configuration rules the
 * format out (e.g. a RAM layout that is not supported).
 */
export function entryDecoderFor(
  h: SectionStartHeader,
  cfg: MigrationConfiguration | null,
): EntryDecoder | string {
  const known = KNOWN_FORMATS.find((f) => f.matches(h.idstr));
  if (known === undefined) return 'unknown payload format';
  if (known.versionId !== h.versionId) {
    return (
      `unknown payload format (${known.format} version ${h.versionId}; ` +
      `only version ${known.versionId} is known)`
    );
  }
  return known.create(cfg);
}
