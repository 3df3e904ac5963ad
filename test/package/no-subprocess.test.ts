// The SDK never runs another program: no module reachable from the entry
// points of lib/ (the SDK), protocol/ (the codec) and testing/ (the embedded
// sheep) imports child_process, and none loads a module whose name is
// computed at run time (which this walk could not follow). Only cli/ may.
import { readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import ts from 'typescript';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

interface ModuleInfo {
  /** Relative specifiers resolved to source files, and bare ones as written. */
  imports: string[];
  /** Dynamic import() calls whose argument is not a string literal. */
  computed: number;
}

function scan(file: string): ModuleInfo {
  const src = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const imports: string[] = [];
  let computed = 0;
  const visit = (n: ts.Node): void => {
    if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier) {
      const typeOnly = ts.isImportDeclaration(n) ? n.importClause?.isTypeOnly === true : n.isTypeOnly;
      if (!typeOnly && ts.isStringLiteral(n.moduleSpecifier)) imports.push(n.moduleSpecifier.text);
    } else if (ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const a = n.arguments[0];
      if (a && ts.isStringLiteralLike(a)) imports.push(a.text);
      else computed++;
    } else if (ts.isCallExpression(n) && ts.isIdentifier(n.expression) && n.expression.text === 'require') {
      computed++;
    }
    ts.forEachChild(n, visit);
  };
  visit(src);
  return { imports, computed };
}

/** Every module reachable from `entry`: source files by path, builtins and packages by name. */
function graph(entry: string): { files: Set<string>; external: Map<string, string> } {
  const files = new Set<string>();
  const external = new Map<string, string>(); // name -> first importer
  const todo = [entry];
  while (todo.length > 0) {
    const f = todo.pop() as string;
    if (files.has(f)) continue;
    files.add(f);
    const info = scan(f);
    if (info.computed > 0) external.set(`<computed import in ${relative(root, f)}>`, relative(root, f));
    for (const spec of info.imports) {
      if (spec.startsWith('.')) todo.push(resolve(dirname(f), spec.replace(/\.js$/, '.ts')));
      else if (!external.has(spec)) external.set(spec, relative(root, f));
    }
  }
  return { files, external };
}

const SUBPROCESS = new Set(['child_process', 'node:child_process', 'cluster', 'node:cluster']);

for (const entry of ['lib/index.ts', 'protocol/index.ts', 'testing/index.ts']) {
  t.test(`${entry}: no subprocess in the module graph`, async (t) => {
    const { files, external } = graph(join(root, entry));
    const rels = [...files].map((f) => relative(root, f));
    t.ok(files.size > 5, `${files.size} modules reached`);
    if (entry === 'lib/index.ts') {
      t.ok(rels.includes(join('lib', 'driver', 'driver.ts')), 'the driver is in the graph');
      t.ok(rels.includes(join('lib', 'vdi', 'vdi.ts')), 'the VDI data path is in the graph');
    }
    t.notOk(
      rels.some((f) => f.startsWith('cli/') || f.startsWith('bench/') || f.startsWith('test/')),
      'the graph stays out of cli/, bench/ and test/',
    );
    const offenders = [...external].filter(([name]) => SUBPROCESS.has(name) || name.startsWith('<computed'));
    t.same(offenders, [], 'no child_process, cluster or computed import');
    const packages = [...external.keys()].filter((n) => !n.startsWith('node:') && !builtinModules.includes(n));
    t.same(packages, [], 'only Node builtins: the SDK has no runtime dependency');
  });
}

t.test('the walk sees child_process where it is (cli/bench/launcher.ts)', async (t) => {
  const { external } = graph(join(root, 'cli', 'bench', 'engine.ts'));
  t.ok(external.has('node:child_process'), 'found through cli/bench/engine.ts -> cli/bench/launcher.ts');
});
