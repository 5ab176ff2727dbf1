/**
 * A section payload has no length (qemu-migration.md §1.1): only the entry that wrote it knows
 * where it ends. So `inspect` holds one decoder per entry (per bound section id) that reads its
 * payloads the way the entry's load_state would, up to the footer, keeping counts only.
 */
import type { QEMUFileReader } from '../migration/stream/index.ts';
import type { PayloadSummary, SectionKind } from './report.ts';

export interface EntryDecoder<S extends PayloadSummary = PayloadSummary> {
  readonly format: S['format'];
  /** An empty summary for one section. */
  begin(): S;
  /**
   * Reads one section payload, up to and excluding the footer, counting into `into` as it
   * goes: a section cut short still reports what it held.
   */
  decodeSection(r: QEMUFileReader, type: SectionKind, into: S): Promise<void>;
}
