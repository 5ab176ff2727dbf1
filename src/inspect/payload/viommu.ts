/** The guest IOMMU's state (src/vm/viommu.ts): a FULL section with one counted buffer. */
import {
  VIOMMU_SECTION_IDSTR,
  VIOMMU_SECTION_VERSION,
  VIOMMU_STATE_MAX_BYTES,
  viommuStateMappings,
} from '../../memory/iommu/viommu.ts';
import { getVBuffer } from '../../migration/stream/index.ts';
import type { QEMUFileReader } from '../../migration/stream/index.ts';
import type { EntryDecoder } from '../entry.ts';
import type { SectionKind, ViommuPayload } from '../report.ts';

export { VIOMMU_SECTION_IDSTR, VIOMMU_SECTION_VERSION };

export class ViommuDecoder implements EntryDecoder<ViommuPayload> {
  readonly format = 'viommu';

  begin(): ViommuPayload {
    return { format: 'viommu', bytes: 0, mappings: null };
  }

  async decodeSection(r: QEMUFileReader, _type: SectionKind, s: ViommuPayload): Promise<void> {
    const state = await getVBuffer(r, 'vIOMMU state', VIOMMU_STATE_MAX_BYTES);
    s.bytes = state.length;
    s.mappings = viommuStateMappings(state);
  }
}
