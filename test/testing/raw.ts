/**
 * A raw request/reply client for the embedded-sheep tests, built only on the
 * protocol codec: send any header (even invalid ones) and body, read replies
 * in arrival order or by id, observe the connection closing.
 */
import net from 'node:net';
import {
  decodeResponse,
  encodeRequest,
  FrameDecoder,
  objRequest,
  Op,
  plainRequest,
  type Request,
  type Response,
  vdiRequest,
  clusterRequest,
  Flag,
  encodeVdiNameBody,
} from '../../protocol/index.js';

export interface Frame {
  hdr: Buffer;
  rsp: Response;
  body: Buffer;
}

export class RawClient {
  readonly socket: net.Socket;
  private readonly decoder = new FrameDecoder({ direction: 'response', maxDataLength: 256 * 2 ** 20 });
  private readonly frames: Frame[] = [];
  private waiters: { match: (f: Frame) => boolean; resolve: (f: Frame) => void; reject: (e: Error) => void }[] = [];
  /** Set when the decoder refused the byte stream (e.g. a corrupt header). */
  protocolError: Error | undefined;
  closed = false;
  readonly whenClosed: Promise<void>;
  private nextId = 1;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      if (this.protocolError) return;
      try {
        this.decoder.push(chunk, (h, b) => {
          const hdr = Buffer.from(h);
          this.deliver({ hdr, rsp: decodeResponse(hdr), body: Buffer.from(b.buffer, b.byteOffset, b.length) });
        });
      } catch (e) {
        this.protocolError = e as Error;
        this.fail(e as Error);
      }
    });
    this.whenClosed = new Promise((resolve) => {
      socket.on('close', () => {
        this.closed = true;
        this.fail(new Error('connection closed'));
        resolve();
      });
    });
    socket.on('error', () => {});
  }

  static connect(address: string): Promise<RawClient> {
    const i = address.lastIndexOf(':');
    const host = address.slice(0, i).replace(/^\[|\]$/g, '');
    const port = Number(address.slice(i + 1));
    return new Promise((resolve, reject) => {
      const s = net.connect({ host, port }, () => {
        s.off('error', reject);
        resolve(new RawClient(s));
      });
      s.once('error', reject);
    });
  }

  /** Bytes of a complete reply frame still incomplete in the decoder. */
  get buffered(): number {
    return this.decoder.buffered;
  }

  private deliver(f: Frame): void {
    const i = this.waiters.findIndex((w) => w.match(f));
    if (i >= 0) {
      const [w] = this.waiters.splice(i, 1);
      w?.resolve(f);
    } else this.frames.push(f);
  }

  private fail(e: Error): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w.reject(e);
  }

  /** The next frame that `match` accepts (default: any), in arrival order. */
  next(match: (f: Frame) => boolean = () => true): Promise<Frame> {
    const i = this.frames.findIndex(match);
    if (i >= 0) return Promise.resolve(this.frames.splice(i, 1)[0] as Frame);
    if (this.closed) return Promise.reject(new Error('connection closed'));
    if (this.protocolError) return Promise.reject(this.protocolError);
    return new Promise((resolve, reject) => this.waiters.push({ match, resolve, reject }));
  }

  /** Frames received and not yet taken. */
  get unread(): number {
    return this.frames.length;
  }

  writeRaw(b: Uint8Array): void {
    this.socket.write(b);
  }

  /** Send a request (id assigned when `req.id` is 0 and `autoId`), body after the header. */
  send(req: Request, body?: Uint8Array): number {
    const h = Buffer.alloc(48);
    encodeRequest(req, h);
    this.socket.cork();
    this.socket.write(h);
    if (body?.length) this.socket.write(body);
    this.socket.uncork();
    return req.id;
  }

  /** Send and wait for the reply with the same id. */
  async call(req: Request, body?: Uint8Array): Promise<Frame> {
    if (req.id === 0) req.id = this.nextId++;
    const id = req.id;
    this.send(req, body);
    return this.next((f) => f.rsp.id === id);
  }

  /** Stop reading replies (the server sees backpressure). */
  pause(): void {
    this.socket.pause();
  }
  resume(): void {
    this.socket.resume();
  }

  close(): void {
    this.socket.destroy();
  }
}

// ---------------------------------------------------------------- helpers

export function nameBody(name: string, tag?: string): Uint8Array {
  return encodeVdiNameBody(name, tag);
}

export async function newVdi(
  c: RawClient,
  name: string,
  size: bigint,
  f: Partial<Parameters<typeof vdiRequest>[1]> = {},
): Promise<Frame> {
  return c.call(
    vdiRequest(Op.NEW_VDI, { flags: Flag.CMD_WRITE, dataLength: 256, vdiSize: size, ...f }),
    nameBody(name),
  );
}

export async function getVdiInfo(c: RawClient, name: string, tag = '', snapid = 0): Promise<Frame> {
  return c.call(vdiRequest(Op.GET_VDI_INFO, { flags: Flag.CMD_WRITE, dataLength: 512, snapid }), nameBody(name, tag));
}

export async function readObj(c: RawClient, oid: bigint, offset: number, length: number): Promise<Frame> {
  return c.call(objRequest(Op.READ_OBJ, { oid, offset, dataLength: length }));
}

export async function writeObj(c: RawClient, oid: bigint, offset: number, data: Uint8Array): Promise<Frame> {
  return c.call(objRequest(Op.WRITE_OBJ, { flags: Flag.CMD_WRITE, oid, offset, dataLength: data.length }), data);
}

export async function createObj(
  c: RawClient,
  oid: bigint,
  offset: number,
  data: Uint8Array,
  cowOid?: bigint,
): Promise<Frame> {
  const flags = Flag.CMD_WRITE | (cowOid !== undefined ? Flag.CMD_COW : 0);
  return c.call(
    objRequest(Op.CREATE_AND_WRITE_OBJ, { flags, oid, offset, cowOid: cowOid ?? 0n, dataLength: data.length }),
    data,
  );
}

export { clusterRequest, objRequest, plainRequest, vdiRequest };
