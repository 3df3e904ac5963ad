// The SDK never shells out: no file of lib/ or protocol/ mentions child_process
// (the facade exists to replace drivers that ran qemu-img, collie and dog).
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function files(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...files(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

const all = [...files(join(root, 'lib')), ...files(join(root, 'protocol'))];

t.ok(all.length > 10, `${all.length} files checked`);
t.ok(
  all.some((f) => f.endsWith(join('lib', 'driver.ts'))),
  'the driver is among them',
);
t.ok(
  all.some((f) => f.endsWith(join('lib', 'cli', 'main.ts'))),
  'the CLI is among them',
);
const offenders = all
  .filter((f) => /child_process|\bexecSync\b|\bspawnSync\b/.test(readFileSync(f, 'utf8')))
  .map((f) => relative(root, f));
t.same(offenders, [], 'no child_process (nor exec/spawn) anywhere in lib/ or protocol/');
