/**
 * The server side's streaming decoder: bytes from the client in, messages
 * out, for any chunking. Pull based: `push(chunk)` then `next()` until it
 * returns undefined. No sockets, no timers.
 *
 * Payloads are zero-copy views of the pushed chunks when a payload lies in
 * one chunk; a pushed chunk is never written to, so the views stay valid. A
 * WRITE payload that does not is assembled in one buffer of its full length,
 * allocated when its header is decoded and filled as its bytes are pushed
 * and `next()` is called (one copy, no list of chunks held until the end).
 *
 * After an option that can end the negotiation (GO, EXPORT_NAME) the decoder
 * holds: `next()` returns undefined until the caller says how it went with
 * `startTransmission()` or `continueOptions()`. A client must not send
 * anything before that reply, but bytes it did send stay buffered.
 */
import { ClientFlag, Cmd, IHAVEOPT, OPTION_HEADER, Opt, REQUEST_HEADER, REQUEST_MAGIC } from './constants.js';
import { NbdProtocolError } from './errors.js';

export interface ClientFlagsMessage {
  kind: 'client-flags';
  flags: number;
}

export interface OptionMessage {
  kind: 'option';
  option: number;
  /** The option's data; empty when `tooLarge` (it was skipped). */
  data: Buffer;
  /** The data was over `maxOptionLength` and was skipped: answer NBD_REP_ERR_TOO_BIG. */
  tooLarge: boolean;
  /** The length the client announced. */
  length: number;
}

export interface RequestMessage {
  kind: 'request';
  flags: number;
  type: number;
  /** The client's 8-byte handle, echoed in the reply. */
  cookie: bigint;
  /** u64 offset as a number (exact up to 2^53; larger offsets are out of any export anyway). */
  offset: number;
  length: number;
  /** The WRITE payload (undefined for other commands, and when `tooLarge`). */
  data?: Buffer;
  /** A WRITE payload over `maxPayload`: read off the wire and dropped, so answer with an error. */
  tooLarge: boolean;
}

export type ClientMessage = ClientFlagsMessage | OptionMessage | RequestMessage;

export type DecoderPhase = 'client-flags' | 'options' | 'held' | 'transmission';

export interface DecoderOptions {
  /** Largest option data kept (default 64 KiB); larger ones up to `maxOptionSkip` are skipped. */
  maxOptionLength?: number;
  /** Option data beyond this is a protocol error (default 1 MiB). */
  maxOptionSkip?: number;
  /** Largest WRITE payload accepted (default 32 MiB). */
  maxPayload?: number;
  /** WRITE payloads beyond this are a protocol error (default 2 × maxPayload); between the two they are skipped. */
  maxPayloadSkip?: number;
}

const KNOWN_CLIENT_FLAGS = ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES;

export class NbdServerDecoder {
  private readonly chunks: Buffer[] = [];
  private head = 0;
  private avail = 0;
  private state: DecoderPhase = 'client-flags';
  private failure: NbdProtocolError | undefined;
  /** A header read whose payload is still to come (or to be skipped). */
  private pendingOption: { option: number; length: number; skip: boolean } | undefined;
  private pendingRequest: Omit<RequestMessage, 'kind' | 'data' | 'tooLarge'> | undefined;
  private pendingSkip = 0;
  /** The WRITE payload being assembled, and how much of it is filled. */
  private payload: Buffer | undefined;
  private payloadFilled = 0;
  private readonly maxOptionLength: number;
  private readonly maxOptionSkip: number;
  private readonly maxPayload: number;
  private readonly maxPayloadSkip: number;

  constructor(o: DecoderOptions = {}) {
    this.maxOptionLength = o.maxOptionLength ?? 64 * 1024;
    this.maxOptionSkip = Math.max(this.maxOptionLength, o.maxOptionSkip ?? 1024 * 1024);
    this.maxPayload = o.maxPayload ?? 32 * 1024 * 1024;
    this.maxPayloadSkip = Math.max(this.maxPayload, o.maxPayloadSkip ?? 2 * this.maxPayload);
  }

  get phase(): DecoderPhase {
    return this.state;
  }

  /** Bytes received and not yet decoded (a payload being assembled included). */
  get buffered(): number {
    return this.avail + this.payloadFilled;
  }

  /** True while a message is partly received (a header without all of its payload, or a partial header). */
  get midMessage(): boolean {
    return this.avail > 0 || this.pendingOption !== undefined || this.pendingRequest !== undefined;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    this.chunks.push(b);
    this.avail += b.length;
  }

  /** After a GO or EXPORT_NAME that succeeded. */
  startTransmission(): void {
    if (this.state !== 'held') throw new Error(`startTransmission in phase ${this.state}`);
    this.state = 'transmission';
  }

  /** After a GO that failed: the client may send more options. */
  continueOptions(): void {
    if (this.state !== 'held') throw new Error(`continueOptions in phase ${this.state}`);
    this.state = 'options';
  }

  /** The next complete message, or undefined when more bytes are needed (or the decoder holds). Throws NbdProtocolError on framing errors, and again on every later call. */
  next(): ClientMessage | undefined {
    if (this.failure) throw this.failure;
    try {
      return this.step();
    } catch (e) {
      if (e instanceof NbdProtocolError) this.failure = e;
      throw e;
    }
  }

  private step(): ClientMessage | undefined {
    switch (this.state) {
      case 'held':
        return undefined;
      case 'client-flags': {
        if (this.avail < 4) return undefined;
        const flags = this.take(4).readUInt32BE(0);
        if ((flags & ~KNOWN_CLIENT_FLAGS) !== 0) {
          throw new NbdProtocolError(`unknown client flags 0x${flags.toString(16)}`, 'bad-client-flags');
        }
        this.state = 'options';
        return { kind: 'client-flags', flags };
      }
      case 'options':
        return this.option();
      case 'transmission':
        return this.request();
    }
  }

  private option(): OptionMessage | undefined {
    if (this.pendingOption === undefined) {
      if (this.avail < OPTION_HEADER) return undefined;
      const h = this.take(OPTION_HEADER);
      const magic = h.readBigUInt64BE(0);
      if (magic !== IHAVEOPT) {
        throw new NbdProtocolError(`bad option magic 0x${magic.toString(16)}`, 'bad-magic');
      }
      const option = h.readUInt32BE(8);
      const length = h.readUInt32BE(12);
      if (length > this.maxOptionSkip) {
        throw new NbdProtocolError(
          `option ${option} announces ${length} bytes of data (at most ${this.maxOptionSkip})`,
          'option-too-large',
        );
      }
      const skip = length > this.maxOptionLength;
      this.pendingOption = { option, length, skip };
      if (skip) this.pendingSkip = length;
    }
    const p = this.pendingOption;
    let data: Buffer;
    if (p.skip) {
      this.pendingSkip -= this.skip(this.pendingSkip);
      if (this.pendingSkip > 0) return undefined;
      data = Buffer.alloc(0);
    } else {
      if (this.avail < p.length) return undefined;
      data = this.take(p.length);
    }
    this.pendingOption = undefined;
    if (!p.skip && (p.option === Opt.GO || p.option === Opt.EXPORT_NAME)) this.state = 'held';
    return { kind: 'option', option: p.option, data, tooLarge: p.skip, length: p.length };
  }

  private request(): RequestMessage | undefined {
    if (this.pendingRequest === undefined) {
      if (this.avail < REQUEST_HEADER) return undefined;
      const h = this.take(REQUEST_HEADER);
      const magic = h.readUInt32BE(0);
      if (magic !== REQUEST_MAGIC) {
        throw new NbdProtocolError(`bad request magic 0x${magic.toString(16)}`, 'bad-magic');
      }
      const req = {
        flags: h.readUInt16BE(4),
        type: h.readUInt16BE(6),
        cookie: h.readBigUInt64BE(8),
        offset: Number(h.readBigUInt64BE(16)),
        length: h.readUInt32BE(24),
      };
      if (req.type !== Cmd.WRITE) return { kind: 'request', ...req, tooLarge: false };
      if (req.length > this.maxPayloadSkip) {
        throw new NbdProtocolError(`WRITE of ${req.length} bytes (at most ${this.maxPayload})`, 'payload-too-large');
      }
      this.pendingRequest = req;
      this.pendingSkip = req.length > this.maxPayload ? req.length : 0;
    }
    const r = this.pendingRequest;
    if (r.length > this.maxPayload) {
      this.pendingSkip -= this.skip(this.pendingSkip);
      if (this.pendingSkip > 0) return undefined;
      this.pendingRequest = undefined;
      return { kind: 'request', ...r, tooLarge: true };
    }
    let data = this.payload;
    if (data === undefined) {
      const first = this.chunks[0];
      if (r.length === 0 || (first !== undefined && first.length - this.head >= r.length)) {
        data = this.take(r.length); // in one chunk: a view
      } else {
        data = Buffer.allocUnsafe(r.length);
        this.payload = data;
        this.payloadFilled = 0;
      }
    }
    if (this.payload !== undefined) {
      this.payloadFilled += this.copyOut(this.payload, this.payloadFilled);
      if (this.payloadFilled < r.length) return undefined;
      this.payload = undefined;
      this.payloadFilled = 0;
    }
    this.pendingRequest = undefined;
    return { kind: 'request', ...r, data, tooLarge: false };
  }

  /** Copy available bytes into `dst` from `at` on (as many as fit); returns how many. */
  private copyOut(dst: Buffer, at: number): number {
    let o = at;
    while (o < dst.length && this.avail > 0) {
      const c = this.front();
      const k = Math.min(c.length - this.head, dst.length - o);
      c.copy(dst, o, this.head, this.head + k);
      o += k;
      this.advance(k);
    }
    return o - at;
  }

  /** Consume n available bytes: a view when they lie in one chunk, else one copy. */
  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (n === 0) return Buffer.alloc(0);
    if (first !== undefined && first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.advance(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let o = 0;
    while (o < n) {
      const c = this.front();
      const k = Math.min(c.length - this.head, n - o);
      c.copy(out, o, this.head, this.head + k);
      o += k;
      this.advance(k);
    }
    return out;
  }

  /** Drop up to n available bytes; returns how many were dropped. */
  private skip(n: number): number {
    let done = 0;
    while (done < n && this.avail > 0) {
      const c = this.front();
      const k = Math.min(c.length - this.head, n - done);
      this.advance(k);
      done += k;
    }
    return done;
  }

  private front(): Buffer {
    const c = this.chunks[0];
    if (c === undefined) throw new Error('NbdServerDecoder: no buffered chunk');
    return c;
  }

  private advance(k: number): void {
    this.head += k;
    this.avail -= k;
    if (this.head === this.front().length) {
      this.chunks.shift();
      this.head = 0;
    }
  }
}
