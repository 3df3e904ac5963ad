// cli/format.ts: formatDate's one-minute cache gives what the uncached
// formatting gives (other minutes, another TZ, invalid dates), and table()
// escapes control characters in any row, also when the other rows have none.
import t from 'tap';
import { formatDate, table } from '../../cli/format.js';

function plain(d: Date): string {
  const p = (x: number): string => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

t.test('formatDate: cached within a minute, correct across minutes and zones', async (t) => {
  const tz = process.env['TZ'];
  t.teardown(() => {
    if (tz === undefined) delete process.env['TZ'];
    else process.env['TZ'] = tz;
  });
  const base = Date.UTC(2026, 11, 1, 19, 16, 0);
  const times = [base, base + 1_000, base + 59_999, base + 60_000, base - 1, base + 86_400_000, base + 30_000];
  for (const zone of ['UTC', 'Asia/Kathmandu', 'America/St_Johns', 'Europe/Amsterdam']) {
    process.env['TZ'] = zone;
    for (const ms of times) t.equal(formatDate(new Date(ms)), plain(new Date(ms)), `${zone} ${ms}`);
  }
  process.env['TZ'] = 'UTC';
  t.equal(formatDate(new Date(base)), '2026-12-01 19:16');
  process.env['TZ'] = 'Asia/Kathmandu';
  t.equal(formatDate(new Date(base)), '2026-12-02 01:01', 'same instant, another zone: not the cached text');
  // Local mean time of old dates has a seconds offset: a UTC minute spans two local minutes.
  process.env['TZ'] = 'Europe/Amsterdam';
  const lmt = Date.UTC(1900, 0, 1, 12, 0, 0);
  for (const ms of [lmt, lmt + 30_000, lmt + 45_000, lmt + 59_000])
    t.equal(formatDate(new Date(ms)), plain(new Date(ms)), `LMT ${ms}`);
  t.equal(formatDate(null), '-');
  t.equal(formatDate(new Date(NaN)), plain(new Date(NaN)), 'invalid date as before');
});

t.test('table: control characters escaped in whichever row has them', async (t) => {
  const rows = Array.from({ length: 50 }, (_, i) => [`vol${i}`, String(i)]);
  t.match(table(['Name', 'Id'], rows, ['left', 'right']).split('\n')[1], /^vol0 +0$/);
  rows[37] = ['bad\nname', '37'];
  const out = table(['Name', 'Id'], rows, ['left', 'right']);
  t.equal(out.split('\n').length, 52, 'one line per row');
  t.match(out, /^bad\\nname +37$/m);
});
