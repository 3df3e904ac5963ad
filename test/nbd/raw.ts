// A raw NBD client on the codec, for tests that need exact bytes and errno values.
import net from 'node:net';
import {
  ClientFlag,
  Opt,
  Rep,
  encodeClientFlags,
  encodeInfoRequestData,
  encodeOption,
  encodeRequest,
} from '../../lib/nbd/protocol/index.js';

export class RawClient {
  private buf = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  ended = false;
  private readonly socket: net.Socket;
  constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      this.waiter?.();
    });
    socket.on('close', () => {
      this.ended = true;
      this.waiter?.();
    });
    socket.on('error', () => {});
  }
  static async connect(port: number, name: string): Promise<RawClient> {
    const s = net.connect(port, '127.0.0.1');
    const c = new RawClient(s);
    await c.read(18);
    s.write(encodeClientFlags(ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES));
    s.write(encodeOption(Opt.GO, encodeInfoRequestData(name)));
    for (;;) {
      const h = await c.read(20);
      const type = h.readUInt32BE(12);
      await c.read(h.readUInt32BE(16));
      if (type === Rep.ACK) return c;
      if (type >= 0x80000000) throw new Error(`GO failed: 0x${type.toString(16)}`);
    }
  }
  async read(n: number): Promise<Buffer> {
    while (this.buf.length < n) {
      if (this.ended) throw new Error('connection closed');
      await new Promise<void>((r) => (this.waiter = r));
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }
  send(type: number, offset: number, length: number, cookie: bigint, data?: Buffer, flags = 0): void {
    this.socket.write(encodeRequest({ flags, type, cookie, offset, length }));
    if (data) this.socket.write(data);
  }
  /** A simple reply: [cookie, error]. */
  async reply(): Promise<[bigint, number]> {
    const h = await this.read(16);
    return [h.readBigUInt64BE(8), h.readUInt32BE(4)];
  }
  raw(b: Buffer): void {
    this.socket.write(b);
  }
  close(): void {
    this.socket.destroy();
  }
}
