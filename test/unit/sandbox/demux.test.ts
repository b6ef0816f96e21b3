import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BoundedBuffer, Demuxer } from '../../../src/sandbox/docker/demux.js';

function frame(stream: 1 | 2, text: string): Buffer {
  const payload = Buffer.from(text);
  const h = Buffer.alloc(8);
  h[0] = stream;
  h.writeUInt32BE(payload.length, 4);
  return Buffer.concat([h, payload]);
}

describe('docker stream demux', () => {
  it('splits stdout and stderr across arbitrary chunk boundaries', () => {
    const out = new BoundedBuffer(100);
    const err = new BoundedBuffer(100);
    const d = new Demuxer(out, err);
    const all = Buffer.concat([frame(1, 'hello '), frame(2, 'oops'), frame(1, 'world')]);
    for (let i = 0; i < all.length; i += 3) d.write(all.subarray(i, i + 3));
    assert.equal(out.toString(), 'hello world');
    assert.equal(err.toString(), 'oops');
  });

  it('keeps a bounded prefix and counts the rest', () => {
    const out = new BoundedBuffer(4);
    const d = new Demuxer(out, new BoundedBuffer(4));
    d.write(frame(1, 'abcdefgh'));
    assert.equal(out.toString(), 'abcd');
    assert.equal(out.total, 8);
    assert.equal(out.truncated, true);
  });
});
