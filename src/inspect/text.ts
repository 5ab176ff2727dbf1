/**
 * The readable form of a report: header and configuration, one line per section (or per run
 * of PART sections of one entry), commands, EOF, vmdesc, then totals.
 */
import type { Vmdesc, VmdescDevice } from '../migration/stream/index.ts';
import { describePayloads, formatBytes, formatBytesExact, plural } from './describe.ts';
import type { InspectReport, InspectedCommand, InspectedItem, InspectedSection } from './report.ts';

export interface TextOptions {
  /** Heads the output, e.g. the file name. */
  name?: string;
  /** One line per section; by default a run of PART sections makes one line per entry. */
  sections?: boolean;
  /** Also print the vmdesc JSON, indented. */
  vmdesc?: boolean;
}

/** One line of the listing: a section, a group of PART sections of one entry, or a command. */
type Row =
  { kind: 'sections'; sections: InspectedSection[] } | { kind: 'command'; item: InspectedCommand };

export function renderText(report: InspectReport, options: TextOptions = {}): string {
  const name = options.name === undefined ? '' : `${options.name}: `;
  if (report.version === null) {
    return `${name}no QEMU migration stream header (${plural(report.size, 'byte')} read)\n`;
  }
  const size = plural(report.size, 'byte') + (report.error === null ? '' : ' decoded');
  const out = [`${name}QEMU migration stream version ${report.version}, ${size}`];
  out.push(...configurationLines(report));
  out.push('', ...listing(report, options.sections === true));
  if (report.vmdesc !== null && options.vmdesc === true) {
    out.push('', 'vmdesc JSON:', JSON.stringify(report.vmdesc.desc, null, 2));
  }
  out.push(...totalsLines(report));
  return out.join('\n') + '\n';
}

function configurationLines(report: InspectReport): string[] {
  const cfg = report.configuration;
  if (cfg === null) {
    // Known to be absent only once decoding went past the place it would be.
    const past = report.items.length > 0 || report.eof !== null;
    return past ? ['configuration: not sent'] : [];
  }
  const lines = [`configuration: machine type '${cfg.machineType}'`];
  if (cfg.targetPageBits !== null) lines.push(`  target page bits ${cfg.targetPageBits}`);
  if (cfg.capabilities.length > 0) lines.push(`  capabilities: ${cfg.capabilities.join(', ')}`);
  if (cfg.uuid !== null) lines.push(`  uuid ${formatUuid(cfg.uuid)}`);
  return lines;
}

function listing(report: InspectReport, full: boolean): string[] {
  const rows: string[][] = [['offset', 'item', 'id', 'entry', 'payload']];
  for (const row of groupRows(report.items, full)) {
    if (row.kind === 'command') {
      const c = row.item;
      rows.push([
        String(c.offset),
        'COMMAND',
        '',
        c.value === null ? c.name : `${c.name} ${c.value}`,
        c.name === 'PACKAGED' ? `blob of ${formatBytes(c.value ?? 0)}, not decoded` : '',
      ]);
      continue;
    }
    const s = row.sections;
    const first = s[0]!;
    const named = first.type === 'START' || first.type === 'FULL';
    rows.push([
      String(first.offset),
      s.length === 1 ? first.type : `${first.type} ×${s.length}`,
      String(first.sectionId),
      named ? `${first.idstr} (instance ${first.instanceId}, v${first.versionId})` : first.idstr,
      describePayloads(s.map((x) => x.payload)) +
        (s.every((x) => x.complete) ? '' : ' (cut short)'),
    ]);
  }
  if (report.eof !== null) rows.push([String(report.eof), 'EOF', '', '', '']);
  const v = report.vmdesc;
  if (v !== null) {
    rows.push([String(v.offset), 'VMDESC', '', formatBytes(v.length), vmdescSummary(v.desc)]);
  }
  if (rows.length === 1) return ['no sections'];
  const lines = table(rows, [0, 2]);
  if (v !== null) lines.push(...v.desc.devices.map((d) => `    ${vmdescDeviceLine(d)}`));
  if (report.totals.bytes.trailing > 0) {
    lines.push(`${plural(report.totals.bytes.trailing, 'byte')} after EOF that are no vmdesc`);
  }
  return lines;
}

/**
 * Without `full`, each run of consecutive PART sections becomes one row per entry, in the
 * order the entries first appear in the run (iterations interleave ram and devices).
 */
function groupRows(items: readonly InspectedItem[], full: boolean): Row[] {
  const rows: Row[] = [];
  let run: Map<number, InspectedSection[]> | null = null;
  for (const item of items) {
    if (item.item === 'command') {
      rows.push({ kind: 'command', item });
      run = null;
    } else if (full || item.type !== 'PART') {
      rows.push({ kind: 'sections', sections: [item] });
      run = null;
    } else {
      run ??= new Map();
      const group = run.get(item.sectionId);
      if (group !== undefined) {
        group.push(item);
      } else {
        const sections = [item];
        run.set(item.sectionId, sections);
        rows.push({ kind: 'sections', sections });
      }
    }
  }
  return rows;
}

function vmdescSummary(d: Vmdesc): string {
  const parts = [`page_size ${d.page_size}`, plural(d.devices.length, 'device')];
  if (d.configuration !== undefined) parts.push(`configuration ${d.configuration.vmsd_name}`);
  return parts.join(', ');
}

function vmdescDeviceLine(d: VmdescDevice): string {
  const name = `${d.name} (instance ${d.instance_id})`;
  if ('vmsd_name' in d) {
    const bytes = d.fields.reduce((n, f) => n + (typeof f.size === 'number' ? f.size : 0), 0);
    const subs = d.subsections?.length ?? 0;
    return (
      `${name}: vmsd ${d.vmsd_name} v${d.version}, ${plural(d.fields.length, 'field')}, ` +
      `${formatBytes(bytes)}${subs > 0 ? `, ${plural(subs, 'subsection')}` : ''}`
    );
  }
  return `${name}: save_state, ${formatBytes(d.size)}`;
}

function totalsLines(report: InspectReport): string[] {
  const t = report.totals;
  const out: string[] = [];
  if (t.ram !== null) {
    const ram = t.ram;
    out.push('', `RAM (page size ${formatBytes(ram.pageSize)})`);
    const rows = [['block', 'used length', 'pages', 'zero pages']];
    for (const b of ram.blocks) {
      rows.push([b.idstr, formatBytes(b.usedLength), String(b.pages), String(b.zeroPages)]);
    }
    rows.push(['total', '', String(ram.pages), String(ram.zeroPages)]);
    out.push(...table(rows, [2, 3]).map((l) => `  ${l}`));
    out.push(`  page data ${formatBytesExact(ram.pageBytes)}`);
    if (ram.multifdFlushes > 0)
      out.push(`  ${plural(ram.multifdFlushes, 'multifd flush', 'multifd flushes')}`);
  }
  if (t.vfio.length > 0) {
    out.push('', 'VFIO devices');
    const rows = [
      [
        'device',
        'sections',
        'data records',
        'data',
        'config',
        'init data sent',
        'config load ready',
      ],
    ];
    for (const d of t.vfio) {
      rows.push([
        `${d.idstr} (instance ${d.instanceId})`,
        String(d.sections),
        String(d.dataRecords),
        formatBytesExact(d.dataBytes),
        d.configSent ? formatBytes(d.configBytes) : 'not sent',
        d.initDataSent === 0 ? 'no' : d.initDataSent === 1 ? 'yes' : `yes ×${d.initDataSent}`,
        d.configLoadReady ? 'yes' : 'no',
      ]);
    }
    out.push(...table(rows, [1, 2]).map((l) => `  ${l}`));
  }
  out.push('', 'bytes by section type');
  const b = t.bytes;
  const byType: string[][] = [
    ['kind', 'count', 'bytes'],
    ['header + configuration', '', String(b.header)],
    ...(['START', 'PART', 'END', 'FULL'] as const).map((k) => [
      k,
      String(t.sections[k]),
      String(b[k]),
    ]),
    [
      'commands',
      String(report.items.filter((i) => i.item === 'command').length),
      String(b.command),
    ],
    ['EOF', report.eof === null ? '0' : '1', String(b.eof)],
    ['vmdesc', report.vmdesc === null ? '0' : '1', String(b.vmdesc)],
  ];
  if (b.trailing > 0) byType.push(['after EOF', '', String(b.trailing)]);
  byType.push(['total', '', String(report.size)]);
  out.push(...table(byType, [1, 2]).map((l) => `  ${l}`));
  if (t.entries.length > 0) {
    out.push('', 'bytes by entry');
    const rows = [['entry', 'id', 'format', 'sections', 'bytes']];
    for (const e of t.entries) {
      rows.push([
        `${e.idstr} (instance ${e.instanceId})`,
        String(e.sectionId),
        e.format ?? 'unknown',
        String(e.sections),
        formatBytesExact(e.bytes),
      ]);
    }
    out.push(...table(rows, [1, 3]).map((l) => `  ${l}`));
  }
  return out;
}

/** Columns padded to their widest cell (the last one only when right-aligned). */
function table(rows: readonly string[][], rightAligned: readonly number[]): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((row) =>
    row
      .map((c, i) => {
        if (rightAligned.includes(i)) return c.padStart(widths[i]!);
        return i === row.length - 1 ? c : c.padEnd(widths[i]!);
      })
      .join('  ')
      .trimEnd(),
  );
}

/** 8-4-4-4-12, as QEMU prints a uuid. */
function formatUuid(hex: string): string {
  if (hex.length !== 32) return hex;
  return [
    hex.slice(0, 8),
    hex.slice(8, 12),
    hex.slice(12, 16),
    hex.slice(16, 20),
    hex.slice(20),
  ].join('-');
}
