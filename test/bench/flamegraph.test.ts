// bench/flamegraph.ts: flame graph SVG and self-time ranking of a V8
// .cpuprofile. A synthetic profile with known times, and one real profile of
// a busy loop made by `node --cpu-prof`.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import {
  type CpuProfile,
  type ProfileNode,
  buildTree,
  fitLabel,
  flameSvg,
  main,
  selfTimes,
  summaryText,
  xmlText,
} from '../../bench/flamegraph.js';

const OURS = 'file:///work/main/dist/lib/transport/connection.js';
const frame = (id: number, name: string, url = '', line = -1, children: number[] = []): ProfileNode => ({
  id,
  callFrame: { functionName: name, url, lineNumber: line, columnNumber: 0, scriptId: '1' },
  hitCount: 0,
  children,
});

/**
 * Self times (ms): main 10 (url x.js:5); main → work 30 (ours), twice as two
 * nodes (merged: 60), → work → <tmpl&co> 20; main → tiny 0.2; (garbage
 * collector) 5; (program) 3; (idle) 100. Non-idle total: 98.2 ms.
 */
function synthetic(): CpuProfile {
  const nodes = [
    frame(1, '(root)', '', -1, [2, 3, 4, 5, 9]),
    frame(2, 'main', 'file:///app/x.js', 4, [6, 7, 8]),
    frame(3, '(garbage collector)'),
    frame(4, '(program)'),
    frame(5, '(idle)'),
    frame(6, 'work', OURS, 41, [10]),
    frame(7, 'work', OURS, 41),
    frame(8, 'tiny', 'node:internal/streams', 9),
    frame(9, 'main', 'file:///app/other.js', 4), // same name, another file: not merged with node 2
    frame(10, '<tmpl&co>', 'file:///app/x.js', 99),
  ];
  const selfMs: Record<number, number> = { 2: 10, 3: 5, 4: 3, 5: 100, 6: 30, 7: 30, 8: 0.2, 9: 0, 10: 20 };
  const samples: number[] = [];
  const timeDeltas: number[] = [];
  // One sample per 100 µs, interleaved the way a real profile is (order must not matter).
  const left = new Map(Object.entries(selfMs).map(([id, v]) => [Number(id), Math.round(v * 10)]));
  while ([...left.values()].some((v) => v > 0)) {
    for (const [id, v] of left) {
      if (v <= 0) continue;
      samples.push(id);
      timeDeltas.push(100);
      left.set(id, v - 1);
    }
  }
  for (const n of nodes) n.hitCount = samples.filter((s) => s === n.id).length;
  return { nodes, startTime: 0, endTime: samples.length * 100, samples, timeDeltas };
}

interface Rect {
  x: number;
  y: number;
  width: number;
  title: string;
}

/** The frame rects of a flame graph, with their tooltips (each is `<g><title>…</title><rect …/>…</g>`). */
function rects(svg: string): Rect[] {
  const out: Rect[] = [];
  for (const m of svg.matchAll(/<g><title>([^<]*)<\/title><rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)"/g)) {
    out.push({ title: m[1] ?? '', x: Number(m[2]), y: Number(m[3]), width: Number(m[4]) });
  }
  return out;
}
/** Widths are rounded to 0.01 px at both edges: within 0.01 of exact. */
function near(t: Test, actual: number | undefined, exact: number, msg: string): void {
  t.ok(actual !== undefined && Math.abs(actual - exact) <= 0.01 + 1e-9, `${msg}: ${actual} ≈ ${exact.toFixed(4)}`);
}
const named = (rs: Rect[], prefix: string): Rect[] => rs.filter((r) => r.title.startsWith(prefix));

/** Tags balanced, no stray `<` or `&`, one root element. */
function wellFormed(svg: string): string[] {
  const errors: string[] = [];
  const body = svg.replace(/^<\?xml[^?]*\?>\s*/, '');
  const stack: string[] = [];
  let roots = 0;
  for (const m of body.matchAll(
    /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|<|&(?!(?:lt|gt|amp|quot|apos);)/g,
  )) {
    if (m[2] === undefined) {
      errors.push(`stray ${JSON.stringify(m[0])} at ${m.index}`);
      continue;
    }
    if (stack.length === 0 && m[1] === '') roots++;
    if (m[1] === '/') {
      const open = stack.pop();
      if (open !== m[2]) errors.push(`</${m[2]}> closes <${open}>`);
    } else if (m[4] !== '/') stack.push(m[2]);
  }
  if (stack.length > 0) errors.push(`unclosed: ${stack.join(' ')}`);
  if (roots !== 1) errors.push(`${roots} root elements`);
  return errors;
}

t.test('the well-formedness check itself catches broken XML', async (t) => {
  t.same(wellFormed('<svg><g><title>a &amp; b</title></g></svg>'), []);
  t.not(wellFormed('<svg><g></svg>').length, 0);
  t.not(wellFormed('<svg><text>a < b</text></svg>').length, 0);
  t.not(wellFormed('<svg><text>a & b</text></svg>').length, 0);
  t.not(wellFormed('<svg/><svg/>').length, 0);
});

t.test('tree: inclusive times, identical frames merged, idle left out', async (t) => {
  const { root, breakdown } = buildTree(synthetic());
  t.equal(Math.round(root.total), 98200, 'total (µs) = all non-idle self time');
  t.notOk(
    root.children.some((c) => c.name === '(idle)'),
    'no idle frame',
  );
  const mains = root.children.filter((c) => c.name === 'main');
  t.equal(mains.length, 2, 'same name in another file is another frame');
  const main = mains.find((m) => m.url === 'file:///app/x.js');
  const works = main?.children.filter((c) => c.name === 'work') ?? [];
  t.equal(works.length, 1, 'two work nodes under main are one frame');
  t.equal(Math.round(works[0]?.self ?? 0), 60000);
  t.equal(Math.round(works[0]?.total ?? 0), 80000, 'its child counts in it');
  t.equal(Math.round(main?.total ?? 0), 90200);
  t.equal(Math.round(breakdown.idle * 100) / 100, Math.round((100 / 198.2) * 10000) / 100, 'idle share of all samples');
  t.equal(Math.round(breakdown.gc * 100) / 100, Math.round((5 / 198.2) * 10000) / 100);
  t.equal(breakdown.weighting, 'timeDeltas');

  const kept = buildTree(synthetic(), true).root;
  t.equal(Math.round(kept.total), 198200, 'keepIdle: idle in the total');
});

t.test('a profile linked by parent instead of children is the same tree', async (t) => {
  const p = synthetic();
  const parentOf = new Map(p.nodes.flatMap((n) => (n.children ?? []).map((c) => [c, n.id] as const)));
  const up: CpuProfile = {
    ...p,
    nodes: p.nodes.map(({ children: _c, ...n }) => {
      const parent = parentOf.get(n.id);
      return parent === undefined ? n : { ...n, parent };
    }),
  };
  t.same(buildTree(up).root, buildTree(p).root);
});

t.test('weights come from timeDeltas, not hitCount, when both are there', async (t) => {
  const p = synthetic();
  // Every `work` sample took 3× as long: hitCount alone would not know.
  const ids = new Set([6, 7]);
  const timeDeltas = (p.timeDeltas ?? []).map((d, i) => (ids.has(p.samples?.[i] ?? 0) ? 3 * d : d));
  const top = selfTimes({ ...p, timeDeltas })[0];
  t.equal(top?.name, 'work');
  t.equal(Math.round(top?.selfMs ?? 0), 180);

  const noDeltas: CpuProfile = { ...p };
  delete noDeltas.timeDeltas;
  const { root, breakdown } = buildTree(noDeltas);
  t.equal(breakdown.weighting, 'hitCount', 'fallback');
  t.equal(Math.round(root.total), 98200, 'hitCount × (endTime − startTime) / hits');
  t.equal(selfTimes(noDeltas)[0]?.name, 'work');

  const noTimes = buildTree({ nodes: p.nodes.map((n) => ({ ...n })) });
  t.equal(Math.round(noTimes.root.total), 982000, 'no start/end: 1 ms a hit');
});

t.test('negative deltas count nothing; long gaps are flagged', async (t) => {
  const p: CpuProfile = {
    nodes: [frame(1, '(root)', '', -1, [2]), frame(2, 'f', 'file:///f.js', 0)],
    samples: [2, 2, 2, 2, 2],
    timeDeltas: [1000, -50, 1000, 1000, 1000],
  };
  t.equal(buildTree(p).root.total, 4000);
  t.equal(buildTree(p).breakdown.gaps, 0);
  const gappy = { ...p, timeDeltas: [1000, 1000, 1000, 1000, 20000] };
  t.equal(Math.round(buildTree(gappy).breakdown.gaps), 83);
  t.match(flameSvg(gappy), /sampling gaps/);
  t.match(summaryText(gappy), /sampling gaps/);
  t.notMatch(flameSvg(p), /sampling gaps/);
});

t.test('self-time ranking', async (t) => {
  const st = selfTimes(synthetic());
  t.same(
    st.map((s) => [s.name, Math.round(s.selfMs * 10) / 10]),
    [
      ['work', 60],
      ['<tmpl&co>', 20],
      ['main', 10],
      ['(garbage collector)', 5],
      ['(program)', 3],
      ['tiny', 0.2],
    ],
    'largest first, (idle) left out, a frame with no self time left out',
  );
  t.equal(Math.round((st[0]?.percent ?? 0) * 100) / 100, Math.round((60 / 98.2) * 10000) / 100, '% of non-idle total');
  t.equal(st[0]?.category, 'ours');
  t.equal(st.find((s) => s.name === 'tiny')?.category, 'node');
  t.equal(selfTimes(synthetic(), { keepIdle: true })[0]?.name, '(idle)');

  const text = summaryText(synthetic());
  const lines = text.trim().split('\n');
  t.match(lines[0], /idle 50\.\d%, GC 2\.\d+%, \(program\) 1\.\d+%/);
  t.match(lines[1], /top 6 frames by self time, of 98\.2 ms \(idle excluded\)/);
  t.match(lines[3], /^\s+60\.0\s+61\.1\s+work \(dist\/lib\/transport\/connection\.js:42\)\s+\[ours\]$/);
  t.match(lines[4], /<tmpl&co> \(\/app\/x\.js:100\)/);
  t.equal(summaryText(synthetic(), { top: 2 }).trim().split('\n').length, 5);
});

t.test('svg: widths proportional to inclusive time, children within their parent', async (t) => {
  const svg = flameSvg(synthetic(), { width: 1020, minPercent: 0 });
  const rs = rects(svg);
  const gw = 1000; // 1020 − 2 × 10 px padding
  const [root] = named(rs, 'all ');
  t.ok(root, 'root frame');
  t.equal(root?.width, gw, 'root = full width');
  t.equal(root?.x, 10);
  const work = named(rs, 'work ');
  t.equal(work.length, 1, 'merged: one rect');
  near(t, work[0]?.width, (80 / 98.2) * gw, 'work: 80 of 98.2 ms');
  const tmpl = named(rs, '&lt;tmpl&amp;co&gt; ');
  near(t, tmpl[0]?.width, (20 / 98.2) * gw, '<tmpl&co>: 20 ms');
  t.equal(tmpl[0]?.x, work[0]?.x, 'the only child starts at its parent');
  t.ok((tmpl[0]?.y ?? 0) < (work[0]?.y ?? 0), 'root at the bottom: callee above');
  t.match(work[0]?.title ?? '', /^work \(dist\/lib\/transport\/connection\.js:42\) — 80\.0 ms, 81\.5%/);
  for (const r of rs) t.match(String(r.width), /^\d+(\.\d{1,2})?$/, 'two decimals at most');

  // Every frame's children (the rects one row up, inside its span) sum to no more than it.
  for (const p of rs) {
    const kids = rs.filter((c) => c.y === p.y - 17 && c.x >= p.x && c.x < p.x + p.width);
    const sum = kids.reduce((s, c) => s + c.width, 0);
    t.ok(sum <= p.width + 1e-9, `children of ${p.title.split(' ')[0]}: ${sum} ≤ ${p.width}`);
    for (const c of kids) t.ok(c.x + c.width <= p.x + p.width + 1e-9, 'child inside parent');
  }
  const gc = named(rs, '(garbage collector) ');
  near(t, gc[0]?.width, (5 / 98.2) * gw, 'gc: 5 ms');
});

t.test('svg: idle excluded unless kept; subtitle tells the shares', async (t) => {
  const svg = flameSvg(synthetic(), { minPercent: 0 });
  t.equal(named(rects(svg), '(idle)').length, 0);
  t.match(svg, /idle 50\.\d+%, GC 2\.\d+%, \(program\) 1\.\d+% of it/);
  t.match(svg, /idle excluded from the total/);
  const kept = flameSvg(synthetic(), { minPercent: 0, keepIdle: true });
  const idle = named(rects(kept), '(idle) ');
  t.equal(idle.length, 1);
  near(t, idle[0]?.width, (100 / 198.2) * 1180, 'idle: 100 of 198.2 ms');
  t.match(kept, /idle included/);
  t.match(kept, /fill="#dcdcdc"/, 'idle grey');
});

t.test('svg: min-percent drops narrow frames', async (t) => {
  const all = rects(flameSvg(synthetic(), { minPercent: 0 }));
  t.equal(named(all, 'tiny ').length, 1, 'tiny (0.2 ms = 0.2%) drawn at 0');
  const svg = flameSvg(synthetic());
  const def = rects(svg);
  t.equal(named(def, 'tiny ').length, 0, 'dropped at the default 0.5%');
  t.equal(def.length, all.length - 1);
  t.match(svg, /1 frame under 0\.5% of it not drawn/);
  const coarse = rects(flameSvg(synthetic(), { minPercent: 25 }));
  t.same(
    coarse.map((r) => r.title.split(' ')[0]).sort(),
    ['all', 'main', 'work'],
    'at 25%: <tmpl&co> (20%), gc, program, the other main gone',
  );
});

t.test('svg: escaped labels, truncated to the rect, categories coloured, well-formed', async (t) => {
  const p = synthetic();
  const weird = p.nodes.find((n) => n.id === 9);
  if (weird) weird.callFrame.functionName = 'a"b\'c\u0001d';
  const svg = flameSvg(p, { minPercent: 0, title: 'T <&> "q"' });
  t.same(wellFormed(svg), []);
  t.notMatch(svg, /<tmpl/, 'no raw < from a function name');
  t.match(svg, /&lt;tmpl&amp;co&gt;/);
  t.match(svg, /T &lt;&amp;&gt; &quot;q&quot; — flame graph \(root at the bottom/);
  t.notOk(svg.includes('\u0001'), 'control character replaced');
  t.notMatch(svg, /<script/);
  t.match(svg, /<rect x="0" y="0" width="1200" height="\d+" fill="#ffffff"\/>/, 'white background');

  // Labels: the name when it fits, cut with … when not, none below 3 characters.
  for (const m of svg.matchAll(/<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)"[^>]*\/><text[^>]*>([^<]*)<\/text>/g)) {
    const w = Number(m[1]);
    const label = (m[2] ?? '').replace(/&[a-z]+;/g, '_');
    t.ok(Array.from(label).length * 7 <= w - 6, `label ${JSON.stringify(label)} fits ${w} px`);
  }
  t.equal(fitLabel('abcdefghij', 6 + 70), 'abcdefghij');
  t.equal(fitLabel('abcdefghijk', 6 + 70), 'abcdefghi…');
  t.equal(fitLabel('abcdef', 6 + 14), '');
  t.equal(fitLabel('😀😀😀😀😀', 6 + 28), '😀😀😀…', 'code points, not UTF-16 units');
  t.equal(xmlText('\ud800x'), '\ufffdx', 'lone surrogate');

  const fill = (prefix: string): string | undefined =>
    new RegExp(`<title>${prefix}[^<]*</title><rect [^>]*fill="(#[0-9a-f]{6})"`).exec(svg)?.[1];
  const [work, tiny, gc, prog, main] = ['work ', 'tiny ', '\\(garbage collector\\) ', '\\(program\\) ', 'main '].map(
    fill,
  );
  t.ok(work && tiny && gc && prog && main, 'every category has a fill');
  t.equal(new Set([work, tiny, gc, prog, main]).size, 5, 'ours, node:, other JS, GC, program: all different');
  t.equal(gc, '#8f8f8f');
  t.equal(prog, '#b4b4b4');
  t.equal(flameSvg(p, { minPercent: 0 }), svg.replace(/T &lt;&amp;&gt; &quot;q&quot;/, 'CPU profile'), 'deterministic');
});

t.test('svg: an empty profile is still a document', async (t) => {
  const svg = flameSvg({ nodes: [frame(1, '(root)')], samples: [], timeDeltas: [] });
  t.same(wellFormed(svg), []);
  t.match(svg, /no samples/);
  t.same(selfTimes({ nodes: [] }), []);
});

t.test('cli main: writes the svg, prints the summary; bad arguments are usage errors', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'flame-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const prof = join(dir, 'x.cpuprofile');
  writeFileSync(prof, JSON.stringify(synthetic()));
  let out = '';
  t.equal(
    main([prof, '--title', 'synthetic', '--width', '800', '--min-percent', '0'], (s) => (out += s)),
    0,
  );
  const svg = readFileSync(join(dir, 'x.svg'), 'utf8');
  t.match(svg, /width="800"/);
  t.match(svg, /synthetic — flame graph/);
  t.equal(named(rects(svg), 'tiny ').length, 1);
  t.match(out, /top 6 frames by self time/);
  t.match(out, /wrote .*x\.svg/);

  out = '';
  t.equal(
    main([prof, '--out', join(dir, 'y.svg'), '--keep-idle'], (s) => (out += s)),
    0,
  );
  t.match(readFileSync(join(dir, 'y.svg'), 'utf8'), /idle included/);
  t.match(out, /\(idle\)/);
  t.equal(
    main(['--help'], (s) => (out += s)),
    0,
  );

  const errs: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((s: string) => errs.push(s) > 0) as typeof process.stderr.write;
  try {
    t.equal(main([]), 64);
    t.equal(main([prof, prof]), 64);
    t.equal(main([prof, '--bogus']), 64);
    t.equal(main([prof, '--min-percent', 'x']), 64);
    t.equal(main([prof, '--width', '10']), 64);
    t.equal(main([join(dir, 'missing.cpuprofile')]), 1);
    writeFileSync(join(dir, 'bad.cpuprofile'), '{"x":1}');
    t.equal(main([join(dir, 'bad.cpuprofile')]), 1);
  } finally {
    process.stderr.write = write;
  }
  t.match(errs.join(''), /one profile expected/);
  t.match(errs.join(''), /no nodes\[\]/);
});

t.test('end to end: a real --cpu-prof profile of a busy function', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'flame-e2e-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // Busy until the process has used 200 ms of CPU (not wall time: the machine may be busy).
  const script =
    'function flameBusyLoop() { let x = 0; const t0 = process.cpuUsage();' +
    ' while (true) { for (let i = 0; i < 1e5; i++) x += Math.sqrt(i + x);' +
    ' const u = process.cpuUsage(t0); if (u.user + u.system > 200e3) return x; } }' +
    ' flameBusyLoop();';
  execFileSync(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${dir}`, '-e', script], { stdio: 'ignore' });
  // CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile: the main thread is 0 (under tap a worker writes one too).
  const files = readdirSync(dir).filter((f) => /\.\d+\.0\.\d+\.cpuprofile$/.test(f));
  t.equal(files.length, 1, 'the main thread profile');
  const profile = JSON.parse(readFileSync(join(dir, files[0] ?? ''), 'utf8')) as CpuProfile;
  const svg = flameSvg(profile, { title: 'busy loop' });
  t.same(wellFormed(svg), []);
  t.match(svg, /<title>flameBusyLoop \(\[eval\]:1\) — [\d.]+ ms/, 'the busy function is a frame');
  // Not "the top frame": samples are wall time, and a stall elsewhere (a
  // module loader thread under tap: makeSyncRequest) can outweigh it.
  const busy = selfTimes(profile).find((f) => f.name === 'flameBusyLoop');
  t.ok(busy, 'the busy function has self time');
  t.ok((busy?.selfMs ?? 0) > 50, `${busy?.selfMs} ms of it (200 ms of CPU; on a busy machine samples go missing)`);
});
