/**
 * Streaming frame decoder for either direction of a Sheepdog connection.
 *
 * - request stream: a body follows the header only when flags has
 *   SD_FLAG_CMD_WRITE (sheep's `request.c` rule), and is data_length bytes;
 * - response stream: data_length bytes always follow.
 *
 * Chunks of any size are accepted. A body that lies whole in one chunk is
 * handed out as a view of that chunk (the decoder never writes into chunks,
 * so views stay valid); a split body is copied once into an exactly sized
 * buffer, or into a caller-supplied target. Nothing is concatenated per chunk.
 * A data_length above `maxDataLength` is a ProtocolError before anything is
 * allocated; after an error the decoder refuses further input.
 *
 * With `transient: true` the caller reuses each chunk's memory once push()
 * returns (e.g. a socket read into one fixed buffer): bodies are then always
 * copies, a header kept across chunks is copied, and only the header passed
 * to `onFrame` may be a view of the chunk, valid during that call.
 *
 * A reader that can write straight into memory (a socket read) may ask for
 * bodyWindow() while a long body is in progress and report the bytes with
 * bodyReceived(): the body then skips the copy out of a chunk.
 */
import { Flag, HEADER_SIZE } from './constants.js';
import { ProtocolError } from './errors.js';
import { need, u16, u32 } from './bytes.js';

export type FrameDirection = 'request' | 'response';
export type FrameHandler = (header: Uint8Array, body: Uint8Array) => void;

export interface FrameDecoderOptions {
  direction: FrameDirection;
  /** Largest body accepted (default 64 MiB). */
  maxDataLength?: number;
  /**
   * Called once per frame whose body is not empty, with its header: return a
   * buffer of at least `length` bytes to receive the body (e.g. the caller's
   * read buffer), or undefined to let the decoder choose. A returned buffer
   * that is too small is a ProtocolError.
   */
  bodyTarget?: (header: Uint8Array, length: number) => Uint8Array | undefined;
  /**
   * Memory for a body the decoder copies (transient chunks, split bodies):
   * `length` bytes that belong to that body alone (a slice of a larger slab
   * is fine, as long as no other body is ever given the same bytes). Default:
   * a buffer of exactly that length (`Buffer.allocUnsafeSlow`).
   */
  allocBody?: (length: number) => Uint8Array;
  /**
   * The chunks given to push() are reused by the caller afterwards: never
   * hand out or keep a view of one, except the header passed to `onFrame`,
   * which is valid only during that call. Default false.
   */
  transient?: boolean;
}

export const DEFAULT_MAX_DATA_LENGTH = 64 * 1024 * 1024;
const EMPTY = new Uint8Array(0);

export class FrameDecoder {
  readonly direction: FrameDirection;
  readonly maxDataLength: number;
  private readonly bodyTarget: FrameDecoderOptions['bodyTarget'];
  private readonly transient: boolean;
  private readonly alloc: (length: number) => Uint8Array;
  private hdr: Uint8Array | undefined; // header being assembled across chunks
  private hdrFill = 0;
  private pendHeader: Uint8Array | undefined; // header of a body in progress
  private pendBody: Uint8Array = EMPTY;
  private pendLen = 0;
  private pendFill = 0;
  private pendTargeted = false; // pendBody is a buffer bodyTarget gave
  private failed: ProtocolError | undefined;

  constructor(opts: FrameDecoderOptions) {
    if (opts.direction !== 'request' && opts.direction !== 'response') {
      throw new TypeError(`direction must be 'request' or 'response'`);
    }
    this.direction = opts.direction;
    this.maxDataLength = opts.maxDataLength ?? DEFAULT_MAX_DATA_LENGTH;
    this.bodyTarget = opts.bodyTarget;
    this.transient = opts.transient === true;
    this.alloc = opts.allocBody ?? allocExact;
  }

  /** Bytes held for an incomplete frame. */
  get buffered(): number {
    return this.hdrFill + (this.pendHeader ? HEADER_SIZE + this.pendFill : 0);
  }

  /** True when no partial frame is held (a clean place for the stream to end). */
  get idle(): boolean {
    return this.hdrFill === 0 && this.pendHeader === undefined;
  }

  /** Body length the frame with this header carries. Throws ProtocolError when over the bound. */
  bodyLength(header: Uint8Array, off = 0): number {
    need(header, off, HEADER_SIZE, 'frame header');
    const len = u32(header, off + 12);
    if (this.direction === 'request' && (u16(header, off + 2) & Flag.CMD_WRITE) === 0) return 0;
    if (len > this.maxDataLength) {
      throw new ProtocolError(`data_length ${len} exceeds the limit of ${this.maxDataLength} bytes`);
    }
    return len;
  }

  /** Feed a chunk; `onFrame` is called for each complete frame, in order. */
  push(chunk: Uint8Array, onFrame: FrameHandler): void {
    if (this.failed) throw this.failed;
    try {
      this.consume(chunk, onFrame);
    } catch (e) {
      if (e instanceof ProtocolError) {
        this.failed = e;
        this.pendHeader = undefined;
        this.pendBody = EMPTY;
        this.hdr = undefined;
        this.hdrFill = 0;
      }
      throw e;
    }
  }

  /** Drop any partial frame and clear a failure. */
  reset(): void {
    this.failed = undefined;
    this.hdr = undefined;
    this.hdrFill = 0;
    this.pendHeader = undefined;
    this.pendBody = EMPTY;
    this.pendLen = 0;
    this.pendFill = 0;
    this.pendTargeted = false;
  }

  /**
   * Where the rest of the body in progress may be received directly (e.g. a
   * socket read into it instead of into a chunk then copied): the unfilled
   * part of the body's buffer, when at least `min` bytes of the body are
   * still to come. A buffer `bodyTarget` gave only with `targets` (the caller
   * decides what may be written there and when); never while a header is
   * incomplete. Report what was written with bodyReceived().
   */
  bodyWindow(min: number, targets = false): Uint8Array | undefined {
    if (this.pendHeader === undefined || (this.pendTargeted && !targets) || this.failed) return undefined;
    if (this.pendLen - this.pendFill < min) return undefined;
    if (this.pendBody === EMPTY) this.pendBody = this.alloc(this.pendLen);
    return this.pendBody.subarray(this.pendFill, this.pendLen);
  }

  /** `n` bytes were written at the start of the last bodyWindow(): the frame completes when the body is whole. */
  bodyReceived(n: number, onFrame: FrameHandler): void {
    if (this.failed) throw this.failed;
    if (this.pendHeader === undefined || this.pendBody === EMPTY) {
      throw new RangeError('bodyReceived without a body window');
    }
    if (!Number.isInteger(n) || n < 0 || n > this.pendLen - this.pendFill) {
      throw new RangeError(`bodyReceived(${n}) with ${this.pendLen - this.pendFill} body bytes to come`);
    }
    this.pendFill += n;
    if (this.pendFill === this.pendLen) this.completeBody(onFrame);
  }

  private completeBody(onFrame: FrameHandler): void {
    const h = this.pendHeader as Uint8Array;
    const b = this.pendBody.length === this.pendLen ? this.pendBody : this.pendBody.subarray(0, this.pendLen);
    this.pendHeader = undefined;
    this.pendBody = EMPTY;
    this.pendTargeted = false;
    onFrame(h, b);
  }

  /** A body lying whole in `chunk`: a view of it, or a copy when chunks are transient. */
  private bodyOf(chunk: Uint8Array, off: number, len: number): Uint8Array {
    const view = chunk.subarray(off, off + len);
    if (!this.transient) return view;
    const b = this.alloc(len);
    b.set(view);
    return b;
  }

  private consume(chunk: Uint8Array, onFrame: FrameHandler): void {
    let off = 0;
    const end = chunk.length;
    while (off < end) {
      if (this.pendHeader !== undefined) {
        if (this.pendBody === EMPTY) {
          // No target and nothing received yet: a body that lies whole in
          // this chunk is a view of it; otherwise allocate it now, once.
          if (end - off >= this.pendLen) {
            const h = this.pendHeader;
            this.pendHeader = undefined;
            const b = this.bodyOf(chunk, off, this.pendLen);
            off += this.pendLen;
            onFrame(h, b);
            continue;
          }
          this.pendBody = this.alloc(this.pendLen);
        }
        const n = Math.min(this.pendLen - this.pendFill, end - off);
        this.pendBody.set(chunk.subarray(off, off + n), this.pendFill);
        this.pendFill += n;
        off += n;
        if (this.pendFill === this.pendLen) this.completeBody(onFrame);
        continue;
      }
      let header: Uint8Array;
      if (this.hdrFill === 0 && end - off >= HEADER_SIZE) {
        header = chunk.subarray(off, off + HEADER_SIZE);
        off += HEADER_SIZE;
      } else {
        if (this.hdr === undefined) this.hdr = new Uint8Array(HEADER_SIZE);
        const n = Math.min(HEADER_SIZE - this.hdrFill, end - off);
        this.hdr.set(chunk.subarray(off, off + n), this.hdrFill);
        this.hdrFill += n;
        off += n;
        if (this.hdrFill < HEADER_SIZE) return;
        header = this.hdr; // handed out: a fresh scratch is made next time
        this.hdr = undefined;
        this.hdrFill = 0;
      }
      const len = this.bodyLength(header);
      if (len === 0) {
        onFrame(header, EMPTY);
        continue;
      }
      const target = this.bodyTarget?.(header, len);
      if (target === undefined && end - off >= len) {
        onFrame(header, this.bodyOf(chunk, off, len));
        off += len;
        continue;
      }
      if (target !== undefined && target.length < len) {
        throw new ProtocolError(`frame body of ${len} bytes does not fit the ${target.length}-byte target buffer`);
      }
      // A header that is a view of a transient chunk must not outlive it.
      this.pendHeader = this.transient && header.buffer === chunk.buffer ? new Uint8Array(header) : header;
      this.pendBody = target ?? EMPTY; // allocated when the first body bytes arrive
      this.pendTargeted = target !== undefined;
      this.pendLen = len;
      this.pendFill = 0;
    }
  }
}

/** The default body memory: exactly its length, never a slice of Node's shared pool (body.buffer is the body alone). */
function allocExact(length: number): Uint8Array {
  return Buffer.allocUnsafeSlow(length);
}
