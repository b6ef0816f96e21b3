/**
 * Docker's multiplexed attach/exec stream: frames of an 8-byte header (stream type, three zero
 * bytes, big-endian length) followed by the payload. This keeps a bounded prefix of stdout and
 * stderr and counts the rest, so a package that prints 100 MB costs no memory.
 */

export class BoundedBuffer {
  private chunks: Buffer[] = [];
  private kept = 0;
  total = 0;
  constructor(
    private readonly maxBytes: number,
    /** Sees every chunk as it arrives, kept or not. */
    private readonly tap?: (chunk: Buffer) => void,
  ) {}

  push(chunk: Buffer): void {
    this.tap?.(chunk);
    this.total += chunk.length;
    const room = this.maxBytes - this.kept;
    if (room <= 0) return;
    const piece = chunk.length <= room ? chunk : chunk.subarray(0, room);
    this.chunks.push(Buffer.from(piece));
    this.kept += piece.length;
  }

  get truncated(): boolean {
    return this.total > this.kept;
  }

  toString(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

export class Demuxer {
  private pending: Buffer = Buffer.alloc(0);
  private frameType = 0;
  private frameLeft = 0;

  constructor(
    readonly stdout: BoundedBuffer,
    readonly stderr: BoundedBuffer,
  ) {}

  write(data: Buffer): void {
    let buf = this.pending.length ? Buffer.concat([this.pending, data]) : data;
    this.pending = Buffer.alloc(0);
    while (buf.length > 0) {
      if (this.frameLeft === 0) {
        if (buf.length < 8) {
          this.pending = Buffer.from(buf);
          return;
        }
        this.frameType = buf[0] ?? 1;
        this.frameLeft = buf.readUInt32BE(4);
        buf = buf.subarray(8);
        continue;
      }
      const n = Math.min(this.frameLeft, buf.length);
      const target = this.frameType === 2 ? this.stderr : this.stdout;
      target.push(buf.subarray(0, n));
      this.frameLeft -= n;
      buf = buf.subarray(n);
    }
  }
}
