/** Loads the recorded real-sheep transcripts kept (gzipped) in test/fixtures. */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { createHash } from 'node:crypto';

export const TRANSCRIPT_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'sheep-transcripts');

export interface RecordedFrame {
  conn: number;
  dir: 'req' | 'rsp';
  hdr: Buffer;
  bodyLen: number;
  /** null when the recording kept only the hash (replies over 8192 bytes). */
  body: Buffer | null;
  bodySha256: string;
}

export interface Transcript {
  name: string;
  frames: RecordedFrame[];
}

export function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

export function transcriptNames(): string[] {
  return readdirSync(TRANSCRIPT_DIR)
    .filter((f) => f.endsWith('.jsonl.gz'))
    .map((f) => f.replace(/\.jsonl\.gz$/, ''))
    .sort();
}

export function loadTranscript(name: string): Transcript {
  const text = gunzipSync(readFileSync(join(TRANSCRIPT_DIR, `${name}.jsonl.gz`))).toString('utf8');
  const frames: RecordedFrame[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const o = JSON.parse(line) as {
      conn: number;
      dir: 'req' | 'rsp';
      hdr: string;
      body_len: number;
      body: string | null;
      body_sha256: string;
    };
    frames.push({
      conn: o.conn,
      dir: o.dir,
      hdr: Buffer.from(o.hdr, 'hex'),
      bodyLen: o.body_len,
      body: o.body === null ? null : Buffer.from(o.body, 'hex'),
      bodySha256: o.body_sha256,
    });
  }
  return { name, frames };
}

export function loadAll(): Transcript[] {
  return transcriptNames().map(loadTranscript);
}

/** The client→sheep or sheep→client byte stream of one connection, bodies included where recorded. */
export function streamOf(t: Transcript, conn: number, dir: 'req' | 'rsp'): { bytes: Buffer; complete: boolean } {
  const parts: Buffer[] = [];
  let complete = true;
  for (const f of t.frames) {
    if (f.conn !== conn || f.dir !== dir) continue;
    parts.push(f.hdr);
    if (f.bodyLen > 0) {
      if (f.body === null) complete = false;
      else parts.push(f.body);
    }
  }
  return { bytes: Buffer.concat(parts), complete };
}

export function connsOf(t: Transcript): number[] {
  return [...new Set(t.frames.map((f) => f.conn))].sort((a, b) => a - b);
}
