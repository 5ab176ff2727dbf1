/**
 * `inspect`: decodes a saved migration stream — every section through its entry's payload
 * format (ram, VFIO devices, globalstate, timer), commands, EOF, vmdesc — into a report with
 * totals, printable as text or JSON.
 */
export * from './report.ts';
export { inspectStream } from './decode.ts';
export { inspectFile } from './file.ts';
export type { InspectFileOptions } from './file.ts';
export { renderText } from './text.ts';
export type { TextOptions } from './text.ts';
export { describePayloads, formatBytes } from './describe.ts';
export { entryDecoderFor } from './formats.ts';
export type { EntryDecoder } from './entry.ts';
export { isVfioIdstr, VFIO_SECTION_VERSION_ID } from './payload/vfio.ts';
export { skipVfioConfigBlob } from './payload/vfio-config.ts';
