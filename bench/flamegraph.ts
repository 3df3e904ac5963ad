/**
 * Flame graphs of V8 CPU profiles (`node --cpu-prof`), as static SVG (no
 * scripts, no dependencies): readable on GitHub, for docs/benchmarks.md.
 *
 *   node dist/bench/flamegraph.js PROFILE.cpuprofile [--out FILE.svg] [--title TEXT]
 *        [--min-percent 0.5] [--width 1200] [--keep-idle]
 *
 * Writes the SVG (default: PROFILE with .svg for .cpuprofile) and prints the
 * top 15 frames by self time to stdout.
 *
 * Weights: sample i is worth timeDeltas[i] (the time since the sample before;
 * a negative delta, which V8 writes now and then, counts 0). A profile without
 * usable samples/timeDeltas falls back to hitCount × the mean interval
 * ((endTime − startTime) / total hits). Identical frames (same functionName,
 * url and line) under the same parent are merged, and so are their subtrees.
 * `(idle)` is left out of the total unless keepIdle.
 *
 * Layout: classic flame graph, root at the bottom, width = inclusive time
 * (sampled wall time on the stack: on a busy machine, also time descheduled),
 * siblings ordered alphabetically (x order means nothing). Line numbers are
 * the JavaScript's (dist/, 1-based), not the TypeScript source's.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { isMain } from './common.js';

export interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber?: number;
  scriptId?: string | number;
}

export interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  hitCount?: number;
  children?: number[];
  /** Older profiles link upwards instead of (or besides) children. */
  parent?: number;
}

/** The JSON `node --cpu-prof` writes (times in microseconds). */
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime?: number;
  endTime?: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface FlameOptions {
  title?: string | undefined;
  /** Frames narrower than this percentage of the total are not drawn (default 0.5). */
  minPercent?: number | undefined;
  /** Width of the SVG in px (default 1200). */
  width?: number | undefined;
  /** Count `(idle)` in the total and draw it (default false). */
  keepIdle?: boolean | undefined;
}

export type Category = 'ours' | 'node' | 'js' | 'native' | 'gc' | 'program' | 'idle' | 'root';

/** One frame of the merged inclusive-time tree (times in µs). */
export interface FlameNode {
  name: string;
  url: string;
  /** 0-based, as V8 writes it; −1: none. */
  line: number;
  category: Category;
  self: number;
  total: number;
  children: FlameNode[];
}

export interface SelfTime {
  name: string;
  url: string;
  line: number;
  category: Category;
  /** Milliseconds. */
  selfMs: number;
  /** Of the total (idle excluded unless keepIdle). */
  percent: number;
}

/** What the samples were spent on, over all sampled time (idle included). */
export interface Breakdown {
  /** All sampled time, ms. */
  sampledMs: number;
  samples: number;
  idle: number;
  gc: number;
  program: number;
  /** 'timeDeltas' or 'hitCount' (the fallback). */
  weighting: 'timeDeltas' | 'hitCount';
  /**
   * Percent of the sampled time in sampling gaps (a delta over 4× the median
   * one): the thread or the sampler was not running, a busy machine; the
   * sample after each gap carries all of it.
   */
  gaps: number;
}

const IDLE = '(idle)';
const GC = '(garbage collector)';
const PROGRAM = '(program)';
const ROOT = '(root)';
const OURS = ['/dist/lib/', '/dist/protocol/', '/dist/cli/', '/dist/testing/'];

export function categoryOf(name: string, url: string): Category {
  if (name === IDLE) return 'idle';
  if (name === GC) return 'gc';
  if (name === PROGRAM) return 'program';
  if (name === ROOT) return 'root';
  if (OURS.some((p) => url.includes(p))) return 'ours';
  if (url.startsWith('node:')) return 'node';
  if (url === '') return 'native';
  return 'js';
}

/** Self time in µs of each profile node id, and how it was weighed. */
function nodeWeights(p: CpuProfile): {
  self: Map<number, number>;
  weighting: Breakdown['weighting'];
  samples: number;
  gapUs: number;
} {
  const self = new Map<number, number>();
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  if (samples.length > 0 && deltas.length === samples.length) {
    for (let i = 0; i < samples.length; i++) {
      const id = samples[i] as number;
      self.set(id, (self.get(id) ?? 0) + Math.max(0, deltas[i] as number));
    }
    const sorted = deltas.map((d) => Math.max(0, d)).sort((a, b) => a - b);
    const limit = 4 * (sorted[sorted.length >> 1] as number);
    const gapUs = sorted.reduce((s, d) => (d > limit ? s + d : s), 0);
    return { self, weighting: 'timeDeltas', samples: samples.length, gapUs };
  }
  const hits = p.nodes.reduce((s, n) => s + (n.hitCount ?? 0), 0);
  const span = (p.endTime ?? 0) - (p.startTime ?? 0);
  const interval = hits > 0 && span > 0 ? span / hits : 1000;
  for (const n of p.nodes) if ((n.hitCount ?? 0) > 0) self.set(n.id, (n.hitCount ?? 0) * interval);
  return { self, weighting: 'hitCount', samples: hits, gapUs: 0 };
}

const cmp = (a: string | number, b: string | number): number => (a < b ? -1 : a > b ? 1 : 0);
const byFrame = (a: FlameNode, b: FlameNode): number => cmp(a.name, b.name) || cmp(a.url, b.url) || cmp(a.line, b.line);

const keyOf = (f: CallFrame): string => `${f.functionName}\u0000${f.url}\u0000${f.lineNumber}`;

interface Built {
  root: FlameNode;
  breakdown: Breakdown;
}

/** The merged inclusive-time tree: identical frames under one parent become one. */
export function buildTree(p: CpuProfile, keepIdle = false): Built {
  const byId = new Map<number, ProfileNode>();
  for (const n of p.nodes) byId.set(n.id, n);
  const kids = new Map<number, number[]>();
  const hasParent = new Set<number>();
  const link = (parent: number, child: number): void => {
    if (hasParent.has(child)) return;
    hasParent.add(child);
    const k = kids.get(parent);
    if (k === undefined) kids.set(parent, [child]);
    else k.push(child);
  };
  for (const n of p.nodes) for (const c of n.children ?? []) link(n.id, c);
  for (const n of p.nodes) if (n.parent !== undefined && byId.has(n.parent)) link(n.parent, n.id);
  const { self, weighting, samples, gapUs } = nodeWeights(p);
  let sampled = 0;
  const by = { idle: 0, gc: 0, program: 0 };
  for (const [id, w] of self) {
    const n = byId.get(id);
    if (n === undefined) continue;
    sampled += w;
    const c = categoryOf(n.callFrame.functionName, n.callFrame.url);
    if (c === 'idle' || c === 'gc' || c === 'program') by[c] += w;
  }

  const root: FlameNode = { name: 'all', url: '', line: -1, category: 'root', self: 0, total: 0, children: [] };
  const index = new Map<FlameNode, Map<string, FlameNode>>();
  const seen = new Set<number>();
  const add = (id: number, parent: FlameNode): void => {
    const n = byId.get(id);
    if (n === undefined || seen.has(id)) return;
    seen.add(id);
    const f = n.callFrame;
    const cat = categoryOf(f.functionName, f.url);
    if (cat === 'idle' && !keepIdle) return;
    let into = parent;
    if (cat !== 'root') {
      let m = index.get(parent);
      if (m === undefined) index.set(parent, (m = new Map()));
      const k = keyOf(f);
      let child = m.get(k);
      if (child === undefined) {
        const name = f.functionName === '' ? '(anonymous)' : f.functionName;
        child = { name, url: f.url, line: f.lineNumber, category: cat, self: 0, total: 0, children: [] };
        m.set(k, child);
        parent.children.push(child);
      }
      into = child;
    }
    into.self += self.get(id) ?? 0;
    for (const c of kids.get(id) ?? []) add(c, into);
  };
  for (const n of p.nodes) if (!hasParent.has(n.id)) add(n.id, root);

  const sum = (n: FlameNode): number => {
    n.total = n.self;
    for (const c of n.children) n.total += sum(c);
    n.children.sort(byFrame);
    return n.total;
  };
  sum(root);
  const pct = (x: number): number => (sampled > 0 ? (100 * x) / sampled : 0);
  return {
    root,
    breakdown: {
      sampledMs: sampled / 1000,
      samples,
      idle: pct(by.idle),
      gc: pct(by.gc),
      program: pct(by.program),
      weighting,
      gaps: pct(gapUs),
    },
  };
}

/** Frames by self time, summed over every place they appear, largest first. */
export function selfTimes(p: CpuProfile, opts: { keepIdle?: boolean | undefined } = {}): SelfTime[] {
  const { root } = buildTree(p, opts.keepIdle === true);
  const acc = new Map<string, SelfTime>();
  const walk = (n: FlameNode): void => {
    if (n.category !== 'root' && n.self > 0) {
      const k = `${n.name}\u0000${n.url}\u0000${n.line}`;
      const e = acc.get(k);
      if (e === undefined)
        acc.set(k, { name: n.name, url: n.url, line: n.line, category: n.category, selfMs: n.self, percent: 0 });
      else e.selfMs += n.self;
    }
    for (const c of n.children) walk(c);
  };
  walk(root);
  const total = root.total;
  return [...acc.values()]
    .map((e) => ({ ...e, selfMs: e.selfMs / 1000, percent: total > 0 ? (100 * e.selfMs) / total : 0 }))
    .sort((a, b) => b.selfMs - a.selfMs || (a.name < b.name ? -1 : 1));
}

/** A url as a short path: from dist/ or node_modules/ on, file:// dropped. */
export function shortUrl(url: string): string {
  let u = url.startsWith('file://') ? decodeURIComponent(url.slice('file://'.length)) : url;
  const nm = u.lastIndexOf('/node_modules/');
  if (nm >= 0) u = u.slice(nm + 1);
  else {
    const d = u.indexOf('/dist/');
    if (d >= 0) u = u.slice(d + 1);
  }
  return u;
}

/** `name (file:line)`, the line 1-based; natives without a url are the name alone. */
export function frameLabel(f: { name: string; url: string; line: number }): string {
  if (f.url === '') return f.name;
  return f.line >= 0 ? `${f.name} (${shortUrl(f.url)}:${f.line + 1})` : `${f.name} (${shortUrl(f.url)})`;
}

/** XML text: the five specials escaped, characters XML 1.0 forbids replaced with U+FFFD. */
export function xmlText(s: string): string {
  return s
    .replace(
      // eslint-disable-next-line no-control-regex
      /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g,
      '\ufffd',
    )
    .replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c] ?? c);
}

/** Px per character the labels are truncated by (11 px monospace is ~6.6). */
export const CHAR_PX = 7;

/** `text` cut to fit `px` (with "…"), or '' when not even 3 characters fit. */
export function fitLabel(text: string, px: number): string {
  const room = Math.floor((px - 6) / CHAR_PX);
  const chars = Array.from(text);
  if (room < 3) return '';
  if (chars.length <= room) return text;
  return `${chars.slice(0, room - 1).join('')}…`;
}

const COLORS: Record<Category, { h: number; s: number; l: [number, number] } | string> = {
  ours: { h: 18, s: 85, l: [56, 70] },
  node: { h: 210, s: 60, l: [66, 80] },
  js: { h: 95, s: 45, l: [58, 72] },
  native: { h: 280, s: 35, l: [70, 82] },
  gc: '#8f8f8f',
  program: '#b4b4b4',
  idle: '#dcdcdc',
  root: '#e8e8e8',
};
const LEGEND: [Category, string][] = [
  ['ours', 'ours (dist/lib, protocol, cli, testing)'],
  ['node', 'node: internals'],
  ['js', 'other JS'],
  ['native', 'native / V8'],
  ['gc', '(garbage collector)'],
  ['program', '(program)'],
  ['idle', '(idle)'],
];

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

function hsl2hex(h: number, s: number, l: number): string {
  const a = (s / 100) * Math.min(l / 100, 1 - l / 100);
  const f = (n: number): string => {
    const k = (n + h / 30) % 12;
    const v = l / 100 - a * Math.max(-1, Math.min(k - 3, 9 - k, 1));
    return Math.round(v * 255)
      .toString(16)
      .padStart(2, '0');
  };
  return `#${f(0)}${f(8)}${f(4)}`;
}

/** The fill of a frame: its category's hue, the lightness varied by name so neighbours differ. */
export function colorOf(category: Category, name: string): string {
  const c = COLORS[category];
  if (typeof c === 'string') return c;
  const [lo, hi] = c.l;
  const hh = hash(name);
  return hsl2hex(c.h + ((hh & 0xff) / 255) * 16 - 8, c.s, lo + (((hh >>> 8) % 1000) / 999) * (hi - lo));
}

const n2 = (hundredths: number): string => String(hundredths / 100);
const ms = (us: number): string => (us / 1000).toFixed(1);
const pc = (x: number): string => (x >= 10 ? x.toFixed(1) : x.toFixed(2));

/** A flame graph of the profile as a standalone, static SVG document. */
export function flameSvg(p: CpuProfile, opts: FlameOptions = {}): string {
  const width = opts.width ?? 1200;
  const minPercent = opts.minPercent ?? 0.5;
  const keepIdle = opts.keepIdle === true;
  const { root, breakdown: b } = buildTree(p, keepIdle);
  const total = root.total;
  const pad = 10;
  const frameH = 17;
  const top = 88;
  // Integer hundredths of a px, rounded at the edges (a width is within 0.01 px of exact): siblings abut
  // and a child's edges are rounded where its parent's are, so children never overflow their parent.
  const gw = Math.round((width - 2 * pad) * 100);
  const at = (us: number): number => (total > 0 ? Math.round(pad * 100 + (us / total) * gw) : pad * 100);

  interface Placed {
    n: FlameNode;
    depth: number;
    x0: number;
    x1: number;
  }
  const placed: Placed[] = [];
  let dropped = 0;
  let maxDepth = 0;
  const place = (n: FlameNode, start: number, depth: number): void => {
    if (total <= 0) return;
    placed.push({ n, depth, x0: at(start), x1: at(start + n.total) });
    if (depth > maxDepth) maxDepth = depth;
    let s = start;
    for (const c of n.children) {
      if (c.total <= 0) continue;
      if ((100 * c.total) / total < minPercent) dropped++;
      else place(c, s, depth + 1);
      s += c.total;
    }
  };
  place(root, 0, 0);

  const height = top + (maxDepth + 1) * frameH + 2 * pad;
  const yOf = (depth: number): number => top + (maxDepth - depth) * frameH;
  const title = opts.title ?? 'CPU profile';
  const idleNote = keepIdle ? 'idle included' : 'idle excluded from the total';
  const sub1 =
    `${ms(b.sampledMs * 1000)} ms sampled (${b.samples.toLocaleString('en-US')} samples, weighed by ${b.weighting}): ` +
    `idle ${pc(b.idle)}%, GC ${pc(b.gc)}%, (program) ${pc(b.program)}% of it`;
  const sub2 =
    `total ${ms(total)} ms (${idleNote}); ` +
    `${dropped} frame${dropped === 1 ? '' : 's'} under ${minPercent}% of it not drawn (with their callees)` +
    gapNote(b);

  const out: string[] = [];
  out.push('<?xml version="1.0" encoding="UTF-8"?>');
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
      `font-family="ui-monospace, SFMono-Regular, Menlo, Consolas, 'DejaVu Sans Mono', monospace" font-size="11">`,
  );
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(
    `<text x="${pad}" y="22" font-size="15" font-weight="bold" fill="#111111">${xmlText(
      `${title} — flame graph (root at the bottom; width = inclusive sampled time; siblings alphabetical)`,
    )}</text>`,
  );
  out.push(`<text x="${pad}" y="40" fill="#333333">${xmlText(sub1)}</text>`);
  out.push(`<text x="${pad}" y="55" fill="#333333">${xmlText(sub2)}</text>`);
  let lx = pad;
  for (const [cat, label] of LEGEND) {
    out.push(
      `<rect x="${lx}" y="64" width="11" height="11" fill="${colorOf(cat, label)}" stroke="#666666" stroke-width="0.5"/>`,
    );
    out.push(`<text x="${lx + 15}" y="73.5" fill="#333333">${xmlText(label)}</text>`);
    lx += 15 + Array.from(label).length * CHAR_PX + 14;
  }
  for (const { n, depth, x0, x1 } of placed) {
    const w = x1 - x0;
    const y = yOf(depth);
    const label = n.category === 'root' ? 'all' : frameLabel(n);
    const tip =
      `${label} — ${ms(n.total)} ms, ${pc(total > 0 ? (100 * n.total) / total : 0)}%` +
      (n.children.length > 0 ? `\nself ${ms(n.self)} ms` : '');
    const text = fitLabel(n.name, w / 100);
    out.push(
      `<g><title>${xmlText(tip)}</title>` +
        `<rect x="${n2(x0)}" y="${y}" width="${n2(w)}" height="${frameH - 1}" fill="${colorOf(n.category, n.name)}" rx="1"/>` +
        (text === '' ? '' : `<text x="${n2(x0 + 300)}" y="${y + 12}" fill="#000000">${xmlText(text)}</text>`) +
        `</g>`,
    );
  }
  if (total <= 0) out.push(`<text x="${pad}" y="${top + 12}" fill="#333333">no samples</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** A warning when sampling gaps hold a noticeable share of the time (≥ 5%). */
function gapNote(b: Breakdown): string {
  return b.gaps >= 5 ? `; ${pc(b.gaps)}% of the time in sampling gaps (busy machine?): times skewed` : '';
}

/** The top `n` frames by self time as a text table (for a doc to quote). */
export function summaryText(p: CpuProfile, opts: { keepIdle?: boolean | undefined; top?: number } = {}): string {
  const keepIdle = opts.keepIdle === true;
  const { root, breakdown: b } = buildTree(p, keepIdle);
  const rows = selfTimes(p, { keepIdle }).slice(0, opts.top ?? 15);
  const lines = [
    `${ms(b.sampledMs * 1000)} ms sampled, ${b.samples} samples (${b.weighting}); idle ${pc(b.idle)}%, ` +
      `GC ${pc(b.gc)}%, (program) ${pc(b.program)}%${gapNote(b)}`,
    `top ${rows.length} frames by self time, of ${ms(root.total)} ms (${keepIdle ? 'idle included' : 'idle excluded'}):`,
    `${'self ms'.padStart(9)} ${'%'.padStart(6)}  frame`,
  ];
  for (const r of rows)
    lines.push(`${r.selfMs.toFixed(1).padStart(9)} ${pc(r.percent).padStart(6)}  ${frameLabel(r)}  [${r.category}]`);
  return lines.join('\n') + '\n';
}

const USAGE =
  'usage: flamegraph PROFILE.cpuprofile [--out FILE.svg] [--title TEXT] [--min-percent 0.5] [--width 1200] [--keep-idle]\n';

export function main(argv: readonly string[], stdout = (s: string): unknown => process.stdout.write(s)): number {
  let args;
  try {
    args = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        out: { type: 'string' },
        title: { type: 'string' },
        'min-percent': { type: 'string' },
        width: { type: 'string' },
        'keep-idle': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    process.stderr.write(`flamegraph: ${(e as Error).message}\n${USAGE}`);
    return 64;
  }
  const v = args.values;
  if (v.help === true) {
    stdout(USAGE);
    return 0;
  }
  const [file, ...extra] = args.positionals;
  if (file === undefined || extra.length > 0) {
    process.stderr.write(`flamegraph: one profile expected\n${USAGE}`);
    return 64;
  }
  const minPercent = Number(v['min-percent'] ?? '0.5');
  const width = Number(v.width ?? '1200');
  if (!Number.isFinite(minPercent) || minPercent < 0 || minPercent > 100) {
    process.stderr.write(`flamegraph: --min-percent must be 0..100, got ${JSON.stringify(v['min-percent'])}\n`);
    return 64;
  }
  if (!Number.isInteger(width) || width < 200) {
    process.stderr.write(`flamegraph: --width must be an integer ≥ 200, got ${JSON.stringify(v.width)}\n`);
    return 64;
  }
  let profile: CpuProfile;
  try {
    profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
    if (!Array.isArray(profile.nodes)) throw new Error(`${file}: no nodes[] (not a .cpuprofile?)`);
  } catch (e) {
    process.stderr.write(`flamegraph: ${(e as Error).message}\n`);
    return 1;
  }
  const keepIdle = v['keep-idle'] === true;
  const out = v.out ?? `${file.replace(/\.cpuprofile$/, '')}.svg`;
  writeFileSync(out, flameSvg(profile, { title: v.title, minPercent, width, keepIdle }));
  stdout(summaryText(profile, { keepIdle }));
  stdout(`wrote ${out}\n`);
  return 0;
}

if (isMain(import.meta.url)) {
  process.exitCode = main(process.argv.slice(2));
}
