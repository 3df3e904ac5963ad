/**
 * SVG charts of the bench results, for docs/benchmarks.md: hand-written SVG
 * (no dependencies), one grouped-bar-chart function for all of them.
 *
 *   node dist/bench/charts.js [--out DIR] [RESULT.json ...]
 *
 * Without files, the newest result of each kind in bench/results/ is drawn.
 * Writes into --out (default docs/img/):
 *   peer-ratio.svg       bench/peer.ts: ours/C IOPS per row, per server (and --into/C), line at 1.0;
 *                        steady state (with --warmup), peer-ratio-cold.svg the cold runs
 *   peer-latency.svg     p50 and p99 latency, ours / C, per row and server (lower is better), line at 1.0
 *   peer-rss.svg         peak RSS per row: ours, ours --into, C (cluster, else null server), line at 128 MiB
 *   nbd-ratio.svg        bench/nbd.ts: nbd/sdk and nbd/qemu-nbd throughput per workload, lines at 0.9 and 1.0
 *   startup.svg          bench/startup.ts: each command's median wall time × node -e '', lines at 1.0 and 1.5
 * Prints the files written.
 */
import { readFileSync, readdirSync, writeFileSync, mkdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { RESULTS_DIR, ROOT, isMain } from './common.js';
import { ROWS, type PeerResult, type RowSummary, type ServerKind } from './peer.js';

export interface Series {
  name: string;
  /** One value per group; null: no bar. */
  values: (number | null)[];
}

export interface BarChart {
  title: string;
  subtitle?: string | undefined;
  /** The x axis: one group of bars per entry. */
  groups: string[];
  series: Series[];
  yLabel: string;
  xLabel?: string | undefined;
  /** Horizontal reference lines (e.g. 1.0 = parity). */
  refLines?: { value: number; label: string }[] | undefined;
  /** Decimals of the value printed on each bar (default 2). */
  digits?: number | undefined;
}

const COLORS = ['#4e79a7', '#a0cbe8', '#f28e2b', '#ffbe7d', '#59a14f', '#8cd17d', '#e15759', '#ff9d9a'];

export function escapeXml(s: string): string {
  return s.replace(
    /[<>&"']/g,
    (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c] ?? c,
  );
}

/** A round step for about `n` ticks up to `max`. */
function tickStep(max: number, n = 5): number {
  const raw = max / n;
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * p;
}

/** Approximate width of `text` at `size` px (Helvetica-ish average). */
const textW = (text: string, size = 12): number => text.length * size * 0.56;

/** Greedy word wrap to lines of at most `width` px (a longer word stays whole). */
function wrap(label: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const w of label.split(' ')) {
    const next = line === '' ? w : `${line} ${w}`;
    if (line !== '' && textW(next) > width) {
      lines.push(line);
      line = w;
    } else line = next;
  }
  if (line !== '') lines.push(line);
  return lines;
}

const n2 = (x: number): string => String(Number(x.toFixed(2)));

/** A grouped bar chart as a standalone SVG document. */
export function barChart(c: BarChart): string {
  const digits = c.digits ?? 2;
  const ns = Math.max(1, c.series.length);
  const barW = ns > 4 ? 22 : 30;
  const groupW = Math.max(ns * barW + 28, 120);
  const refs = c.refLines ?? [];
  const left = 72;
  const right = 16 + Math.max(0, ...refs.map((r) => textW(r.label, 11) + 8));
  const top = c.subtitle ? 64 : 48;
  const plotH = 260;
  const minPlotW = Math.max(groupW * c.groups.length, 320);
  // The legend flows in rows under the group labels.
  const legendItems = c.series.map((s) => ({ s, w: 17 + textW(s.name) + 22 }));
  const width = Math.ceil(
    Math.max(
      left + minPlotW + right,
      textW(c.title, 15) * 1.1 + 40,
      textW(c.subtitle ?? '') + 40,
      left + Math.max(0, ...legendItems.map((i) => i.w)) + right,
    ),
  );
  // The plot takes the width the title or legend may have added.
  const plotW = width - left - right;
  const legendPos: { x: number; row: number }[] = [];
  let lx = 0;
  let lrow = 0;
  for (const it of legendItems) {
    if (lx > 0 && left + lx + it.w > width - right) {
      lx = 0;
      lrow++;
    }
    legendPos.push({ x: left + lx, row: lrow });
    lx += it.w;
  }
  const labelLines = c.groups.map((g) => wrap(g, groupW - 8));
  const maxLines = Math.max(1, ...labelLines.map((l) => l.length));
  const labelsH = 8 + maxLines * 14 + (c.xLabel ? 18 : 0);
  const legendTop = top + plotH + labelsH + 12;
  const height = legendTop + (legendItems.length > 0 ? (lrow + 1) * 18 : 0) + 8;
  const values = c.series.flatMap((s) => s.values).filter((v): v is number => v !== null && Number.isFinite(v));
  const maxV = Math.max(0, ...values, ...refs.map((r) => r.value));
  const step = tickStep(maxV > 0 ? maxV * 1.12 : 1);
  const yMax = Math.max(step, Math.ceil((maxV * 1.12) / step) * step);
  const y = (v: number): number => top + plotH - (Math.max(0, v) / yMax) * plotH;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text class="title" x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(c.title)}</text>`,
  );
  if (c.subtitle)
    out.push(
      `<text class="subtitle" x="${width / 2}" y="40" text-anchor="middle" fill="#555">${escapeXml(c.subtitle)}</text>`,
    );
  // y axis, grid and ticks
  for (let i = 0; i * step <= yMax * (1 + 1e-9); i++) {
    const v = i * step;
    const yy = n2(y(v));
    out.push(
      `<line x1="${left}" y1="${yy}" x2="${left + plotW}" y2="${yy}" stroke="#e5e5e5"/>`,
      `<text x="${left - 6}" y="${n2(y(v) + 4)}" text-anchor="end" fill="#333">${escapeXml(n2(v))}</text>`,
    );
  }
  out.push(
    `<line class="axis" x1="${left}" y1="${top}" x2="${left}" y2="${top + plotH}" stroke="#333"/>`,
    `<line class="axis" x1="${left}" y1="${top + plotH}" x2="${left + plotW}" y2="${top + plotH}" stroke="#333"/>`,
    `<text class="ylabel" transform="translate(18 ${top + plotH / 2}) rotate(-90)" text-anchor="middle">${escapeXml(c.yLabel)}</text>`,
  );
  // bars; their values are drawn above them after the reference lines
  const x0 = left + (plotW - groupW * c.groups.length) / 2;
  const valueLabels: string[] = [];
  c.groups.forEach((g, gi) => {
    const gx = x0 + gi * groupW + (groupW - ns * barW) / 2;
    c.series.forEach((s, si) => {
      const v = s.values[gi];
      if (v === null || v === undefined || !Number.isFinite(v)) return;
      const bx = gx + si * barW;
      const by = y(v);
      out.push(
        `<rect class="bar" x="${n2(bx + 1)}" y="${n2(by)}" width="${barW - 2}" height="${n2(top + plotH - by)}" fill="${COLORS[si % COLORS.length]}"><title>${escapeXml(`${s.name}, ${g}: ${v.toFixed(digits)}`)}</title></rect>`,
      );
      valueLabels.push(
        `<text class="value" x="${n2(bx + barW / 2)}" y="${n2(by - 4)}" text-anchor="middle" font-size="${barW > 22 ? 10 : 9}" stroke="#ffffff" stroke-width="3" paint-order="stroke">${escapeXml(v.toFixed(digits))}</text>`,
      );
    });
    (labelLines[gi] ?? []).forEach((l, li) =>
      out.push(
        `<text class="group" x="${n2(x0 + gi * groupW + groupW / 2)}" y="${top + plotH + 18 + li * 14}" text-anchor="middle">${escapeXml(l)}</text>`,
      ),
    );
  });
  if (c.xLabel)
    out.push(
      `<text class="xlabel" x="${left + plotW / 2}" y="${top + plotH + labelsH + 4}" text-anchor="middle">${escapeXml(c.xLabel)}</text>`,
    );
  // reference lines over the bars, labelled in the right margin (labels kept 12 px apart)
  let lastLabelY = Number.NEGATIVE_INFINITY;
  for (const r of [...refs].sort((a, b) => b.value - a.value)) {
    const yy = y(r.value);
    const ty = Math.max(yy + 4, lastLabelY + 12);
    lastLabelY = ty;
    out.push(
      `<line class="ref" x1="${left}" y1="${n2(yy)}" x2="${left + plotW}" y2="${n2(yy)}" stroke="#d62728" stroke-width="1.5" stroke-dasharray="6 4"/>`,
      `<text class="reflabel" x="${left + plotW + 6}" y="${n2(ty)}" fill="#d62728" font-size="11">${escapeXml(r.label)}</text>`,
    );
  }
  out.push(...valueLabels);
  // legend
  c.series.forEach((s, si) => {
    const pos = legendPos[si] ?? { x: left, row: 0 };
    const yy = legendTop + pos.row * 18;
    out.push(
      `<rect x="${n2(pos.x)}" y="${yy}" width="12" height="12" fill="${COLORS[si % COLORS.length]}"/>`,
      `<text class="legend" x="${n2(pos.x + 17)}" y="${yy + 10}">${escapeXml(s.name)}</text>`,
    );
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

// ------------------------------------------------------------ the charts

export interface Chart {
  file: string;
  svg: string;
}

const SERVER_NAME: Record<ServerKind, string> = { null: 'null server', cluster: 'real cluster' };

function rowOrder(summaries: readonly RowSummary[]): { id: string; name: string }[] {
  const ids = new Set(summaries.map((s) => s.row));
  const known = ROWS.filter((r) => ids.has(r.id)).map((r) => ({ id: r.id, name: r.name }));
  const other = [...ids].filter((id) => !ROWS.some((r) => r.id === id)).map((id) => ({ id, name: id }));
  return [...known, ...other];
}

function stamp(res: { date?: string; source?: { commit: string; dirty: boolean } }): string {
  const parts = [res.date?.slice(0, 16).replace('T', ' '), res.source ? `commit ${res.source.commit}` : undefined];
  return parts.filter((p) => p !== undefined).join(', ');
}

export function peerCharts(res: PeerResult & { source?: { commit: string; dirty: boolean } }): Chart[] {
  const charts: Chart[] = [];
  const servers = res.options.servers.filter((s) => res.summaries.some((x) => x.server === s));
  const find = (server: ServerKind, row: string, mode: string): RowSummary | undefined =>
    res.summaries.find((s) => s.server === server && s.row === row && s.mode === mode);
  const sub = `${stamp(res)}; median of ${res.options.runs} run${res.options.runs === 1 ? '' : 's'}`;
  for (const mode of ['steady', 'cold'] as const) {
    const inMode = res.summaries.filter((s) => s.mode === mode);
    if (inMode.length === 0) continue;
    const rows = rowOrder(inMode);
    const series: Series[] = [];
    for (const server of servers) {
      series.push({
        name: `${SERVER_NAME[server]}: vdi.read / write`,
        values: rows.map((r) => find(server, r.id, mode)?.ratio ?? null),
      });
      const into = rows.map((r) => find(server, r.id, mode)?.into_ratio ?? null);
      if (into.some((v) => v !== null)) series.push({ name: `${SERVER_NAME[server]}: readInto`, values: into });
    }
    const what = mode === 'steady' ? `steady state (after a ${res.options.warmup} s warm-up)` : 'cold (no warm-up)';
    charts.push({
      file: mode === 'steady' ? 'peer-ratio.svg' : 'peer-ratio-cold.svg',
      svg: barChart({
        title: `Ours / libsheepdog IOPS, ${what}`,
        subtitle: sub,
        groups: rows.map((r) => r.name),
        series,
        yLabel: 'IOPS ratio ours / C (higher is better)',
        refLines: [{ value: 1, label: '1.0 = as fast as C' }],
      }),
    });
  }
  const mode = res.summaries.some((s) => s.mode === 'steady') ? 'steady' : 'cold';
  const inMode = res.summaries.filter((s) => s.mode === mode);
  const rows = rowOrder(inMode);
  const lat: Series[] = [];
  for (const server of servers) {
    for (const p of ['p50_us', 'p99_us'] as const) {
      lat.push({
        name: `${SERVER_NAME[server]}: ${p.slice(0, 3)}`,
        values: rows.map((r) => {
          const s = find(server, r.id, mode);
          return s && s.c[p] > 0 ? Number((s.ours[p] / s.c[p]).toFixed(2)) : null;
        }),
      });
    }
  }
  charts.push({
    file: 'peer-latency.svg',
    svg: barChart({
      title: `Latency, ours / libsheepdog (${mode === 'steady' ? 'steady state' : 'cold'})`,
      subtitle: `${sub}; vdi.read / vdi.write at the same QD`,
      groups: rows.map((r) => r.name),
      series: lat,
      yLabel: 'latency ratio ours / C (lower is better)',
      refLines: [{ value: 1, label: '1.0 = C' }],
    }),
  });
  const rssServer: ServerKind | undefined = servers.includes('cluster') ? 'cluster' : servers[0];
  if (rssServer !== undefined) {
    const pick = (f: (s: RowSummary) => number | null): (number | null)[] =>
      rows.map((r) => {
        const s = find(rssServer, r.id, mode);
        return s ? f(s) : null;
      });
    charts.push({
      file: 'peer-rss.svg',
      svg: barChart({
        title: `Peak RSS per run (${SERVER_NAME[rssServer]}, ${mode === 'steady' ? 'steady state' : 'cold'})`,
        subtitle: `${stamp(res)}; the highest of ${res.options.runs} run${res.options.runs === 1 ? '' : 's'}`,
        groups: rows.map((r) => r.name),
        series: [
          { name: 'ours: vdi.read / write', values: pick((s) => s.ours.max_rss_mb) },
          { name: 'ours: readInto', values: pick((s) => s.into?.max_rss_mb ?? null) },
          { name: 'libsheepdog', values: pick((s) => s.c.max_rss_mb) },
        ],
        yLabel: 'peak RSS, MiB',
        refLines: [{ value: 128, label: 'goal: 128 MiB' }],
        digits: 0,
      }),
    });
  }
  return charts;
}

interface NbdLike {
  date?: string;
  source?: { commit: string; dirty: boolean };
  seconds?: number;
  rounds?: number;
  rows: { workload: string; nbd_vs_sdk: number; nbd_vs_qemu: number }[];
}

export function nbdCharts(res: NbdLike): Chart[] {
  return [
    {
      file: 'nbd-ratio.svg',
      svg: barChart({
        title: 'NBD server throughput (fio over NBD)',
        subtitle: `${stamp(res)}; median of ${res.rounds ?? '?'} rounds of ${res.seconds ?? '?'} s`,
        groups: res.rows.map((r) => r.workload),
        series: [
          { name: 'ours over NBD / the SDK directly', values: res.rows.map((r) => r.nbd_vs_sdk) },
          { name: 'ours over NBD / qemu-nbd (raw file)', values: res.rows.map((r) => r.nbd_vs_qemu) },
        ],
        yLabel: 'throughput ratio (higher is better)',
        refLines: [
          { value: 1, label: '1.0' },
          { value: 0.9, label: 'goal nbd/sdk 0.9' },
        ],
      }),
    },
  ];
}

interface StartupLike {
  date?: string;
  source?: { commit: string; dirty: boolean };
  results: { name: string; runs: number; vsNode: number }[];
}

export function startupCharts(res: StartupLike): Chart[] {
  const rows = res.results.filter((r) => r.name !== "node -e ''");
  const runs = res.results[0]?.runs;
  return [
    {
      file: 'startup.svg',
      svg: barChart({
        title: "One-shot commands: wall time × bare node -e ''",
        subtitle: `${stamp(res)}; median of ${runs ?? '?'} runs, alternating`,
        groups: rows.map((r) => r.name),
        series: [{ name: "median wall time / median of node -e ''", values: rows.map((r) => r.vsNode) }],
        yLabel: "× node -e '' (lower is better)",
        refLines: [
          { value: 1, label: "node -e ''" },
          { value: 1.5, label: 'goal 1.5×' },
        ],
      }),
    },
  ];
}

export type Kind = 'peer' | 'nbd' | 'startup';
export const KINDS: readonly Kind[] = ['peer', 'nbd', 'startup'];

/** The kind of a result file: its `kind` field, else its name (<stamp>-<kind>.json). */
export function kindOf(file: string, data: unknown): Kind | undefined {
  const k = (data as { kind?: unknown } | null)?.kind;
  if (typeof k === 'string' && (KINDS as readonly string[]).includes(k)) return k as Kind;
  return KINDS.find((kind) => basename(file).endsWith(`-${kind}.json`));
}

export function chartsFor(file: string, data: unknown): Chart[] {
  switch (kindOf(file, data)) {
    case 'peer':
      return peerCharts(data as PeerResult);
    case 'nbd':
      return nbdCharts(data as NbdLike);
    case 'startup':
      return startupCharts(data as StartupLike);
    default:
      throw new Error(`${file}: not a peer, nbd or startup result`);
  }
}

/** The newest result file of each kind in `dir` (names start with an ISO time stamp). */
export function newestResults(dir = RESULTS_DIR): string[] {
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch {
    return [];
  }
  return KINDS.flatMap((k) => {
    const last = names.filter((n) => n.endsWith(`-${k}.json`)).pop();
    return last === undefined ? [] : [join(dir, last)];
  });
}

export function main(argv: readonly string[]): number {
  let outDir = join(ROOT, 'docs', 'img');
  const files: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a === '--out') {
      const v = argv[++i];
      if (v === undefined) {
        process.stderr.write('charts: --out needs a directory\n');
        return 64;
      }
      outDir = v;
    } else if (a.startsWith('-')) {
      process.stderr.write(`charts: unknown option ${JSON.stringify(a)}\n`);
      return 64;
    } else files.push(a);
  }
  const inputs = files.length > 0 ? files : newestResults();
  if (inputs.length === 0) {
    process.stderr.write(`charts: no results given and none in ${RESULTS_DIR}\n`);
    return 2;
  }
  mkdirSync(outDir, { recursive: true });
  for (const f of inputs) {
    let charts: Chart[];
    try {
      charts = chartsFor(f, JSON.parse(readFileSync(f, 'utf8')));
    } catch (e) {
      process.stderr.write(`charts: ${(e as Error).message}\n`);
      return 1;
    }
    for (const c of charts) {
      const p = join(outDir, c.file);
      writeFileSync(p, c.svg);
      process.stdout.write(`${p}  (from ${f})\n`);
    }
  }
  return 0;
}

if (isMain(import.meta.url)) {
  process.exitCode = main(process.argv.slice(2));
}
