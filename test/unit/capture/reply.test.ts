/**
 * What the capture answers HTTP requests and DNS questions with: sites that differ from one
 * another (server, body, status of writes) but are stable within a run, bodies that fit what was
 * asked, and the MX and TXT records a registered domain has (its apex only, by the Public Suffix
 * List's rules).
 */
import { scratch } from '../../support/scratch.js';
import assert from 'node:assert/strict';

import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Capture } from '../../../src/capture/capture.js';
import { buildResponse, parseQuery } from '../../../src/capture/dns.js';
import { registrableDomain, suffixRulesFrom } from '../../../src/capture/reserved.js';
import {
  http1Reply,
  processDate,
  SANDBOX_CLOCK_SPEED,
  siteMail,
  siteReply,
  type ReplyRequest,
} from '../../../src/capture/reply.js';

const seed = Buffer.from('0123456789abcdef');
const get = (host: string, path = '/', more: [string, string][] = []): ReplyRequest => ({
  method: 'GET',
  path,
  headers: [['Host', host], ...more],
});
const headerOf = (r: { headers: [string, string][] }, name: string) =>
  r.headers.find(([k]) => k === name)?.[1];

describe('HTTP replies of the capture', () => {
  it('sites answer in styles of their own, the same site alike within a run', () => {
    const hosts = Array.from({ length: 40 }, (_, i) => `site${i}.example.com`);
    const servers = new Set(hosts.map((h) => headerOf(siteReply(get(h), seed), 'Server') ?? '-'));
    assert.ok(servers.size >= 5, [...servers].join(','));
    assert.ok(servers.has('-'), 'some sites send no Server header');
    const at = new Date(Date.UTC(2026, 0, 2, 3, 4, 5));
    const a = http1Reply(siteReply(get('one.example.com'), seed, at));
    const b = http1Reply(siteReply(get('one.example.com', '/'), seed, at));
    assert.deepEqual(a, b);
    // Another run, another style for the same sites.
    const other = Buffer.from('fedcba9876543210');
    assert.ok(
      hosts.some(
        (h) =>
          headerOf(siteReply(get(h), seed), 'Server') !==
          headerOf(siteReply(get(h), other), 'Server'),
      ),
    );
  });

  it('a page is a small HTML document, an API call an empty JSON object, a file empty bytes', () => {
    const page = siteReply(get('www.example.com'), seed);
    assert.equal(page.status, 200);
    assert.match(headerOf(page, 'Content-Type') ?? '', /^text\/html/);
    assert.match(page.body.toString(), /^<!DOCTYPE html>/);
    assert.equal(headerOf(page, 'Content-Length'), String(page.body.length));
    for (const r of [
      get('api.example.com', '/v1/items?x=1'),
      get('example.com', '/data.json'),
      get('example.com', '/q', [['Accept', 'application/json']]),
    ]) {
      const api = siteReply(r, seed);
      assert.equal(headerOf(api, 'Content-Type'), 'application/json', r.path);
      assert.equal(api.body.toString(), '{}');
    }
    const file = siteReply(get('cdn.example.com', '/dist/tool-1.2.3.tgz'), seed);
    assert.equal(headerOf(file, 'Content-Type'), 'application/octet-stream');
    assert.equal(file.body.length, 0);
    assert.equal(headerOf(file, 'Content-Length'), '0');
  });

  it('HEAD has no body but the length of one; writes get 200, 201 or 204; OPTIONS 204', () => {
    const head = siteReply({ ...get('www.example.com'), method: 'HEAD' }, seed);
    assert.equal(head.body.length, 0);
    assert.ok(Number(headerOf(head, 'Content-Length')) > 0);
    const statuses = new Set(
      Array.from({ length: 30 }, (_, i) => {
        const r = siteReply({ ...get(`w${i}.example.com`, '/collect'), method: 'POST' }, seed);
        if (r.status === 204) assert.equal(r.body.length, 0);
        else assert.equal(headerOf(r, 'Content-Length'), String(r.body.length));
        return r.status;
      }),
    );
    assert.deepEqual([...statuses].sort(), [200, 201, 204]);
    assert.equal(siteReply({ ...get('x.example.com'), method: 'OPTIONS' }, seed).status, 204);
  });

  it('every reply carries the time of day, and no site claims a CDN it cannot look like', () => {
    const at = new Date(Date.UTC(2026, 0, 2, 3, 4, 5));
    for (let i = 0; i < 40; i++) {
      const r = siteReply(get(`d${i}.example.com`), seed, at);
      assert.equal(headerOf(r, 'Date'), 'Fri, 02 Jan 2026 03:04:05 GMT');
      assert.doesNotMatch(headerOf(r, 'Server') ?? '', /cloudflare|akamai|fastly|cloudfront/i);
    }
    const post = siteReply({ ...get('w.example.com', '/collect'), method: 'POST' }, seed, at);
    assert.equal(headerOf(post, 'Date'), 'Fri, 02 Jan 2026 03:04:05 GMT');
    assert.match(
      http1Reply(post).toString('latin1'),
      /\r\nDate: Fri, 02 Jan 2026 03:04:05 GMT\r\n/,
    );
  });

  it("a site's time of day is the asking process's: its clock runs fast from its start", () => {
    const wall = Date.UTC(2026, 0, 2, 3, 4, 5);
    // Unknown process: the wall clock.
    assert.equal(processDate(undefined, wall, 9_000).getTime(), wall);
    // Started 2 s of wall time ago: it has lived 2 s × SANDBOX_CLOCK_SPEED on its own clock.
    const d = processDate({ startMs: 7_000 }, wall, 9_000);
    assert.equal(d.getTime() - wall, (SANDBOX_CLOCK_SPEED - 1) * 2_000);
    // Over a wait, the site's Date moves as the process's clock does.
    const later = processDate({ startMs: 7_000 }, wall + 2_400, 11_400);
    assert.equal(later.getTime() - d.getTime(), SANDBOX_CLOCK_SPEED * 2_400);
    // A start time after now (a clock read a moment late) never dates the reply back.
    assert.equal(processDate({ startMs: 9_500 }, wall, 9_000).getTime(), wall);
  });

  it('is well-formed HTTP/1.1 that closes the connection, and never echoes what was sent', () => {
    const r = http1Reply(siteReply(get('evil<script>.example.com', '/'), seed)).toString('latin1');
    assert.match(r, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(r, /\r\nConnection: close\r\n\r\n/);
    assert.ok(!r.includes('<script>'), r);
  });
});

describe('MX and TXT of the capture', () => {
  const rules = suffixRulesFrom(
    '// comment\ncom\nuk\nco.uk\n*.ck\n!www.ck\njp\nkawasaki.jp\n*.kawasaki.jp\n!city.kawasaki.jp\n',
  );

  it('finds the registrable domain by the rules, wildcards and exceptions included', () => {
    assert.equal(registrableDomain('www.example.com', rules), 'example.com');
    assert.equal(registrableDomain('a.b.example.co.uk', rules), 'example.co.uk');
    assert.equal(registrableDomain('co.uk', rules), undefined);
    assert.equal(registrableDomain('x.y.ck', rules), 'x.y.ck');
    assert.equal(registrableDomain('a.www.ck', rules), 'www.ck');
    assert.equal(registrableDomain('a.city.kawasaki.jp', rules), 'city.kawasaki.jp');
    assert.equal(registrableDomain('a.b.kawasaki.jp', rules), 'a.b.kawasaki.jp');
    // A name under a suffix the rules do not list: its last two labels.
    assert.equal(registrableDomain('a.hooks.example', rules), 'hooks.example');
    assert.equal(registrableDomain('example', rules), undefined);
  });

  it("a domain's apex has an MX and an SPF record, a name below it neither", () => {
    const c = new Capture(join(scratch('reply-'), 'events.ndjson'), {
      suffixes: rules,
    });
    const mx = c.answerFor('example.co.uk', 15).answer;
    assert.equal(mx.type, 'MX');
    assert.match(mx.type === 'MX' ? mx.exchange : '', /^[a-z0-9]+\.example\.co\.uk$/);
    const txt = c.answerFor('example.co.uk', 16).answer;
    assert.match(txt.type === 'TXT' ? txt.text : '', /^v=spf1 .*all$/);
    assert.deepEqual(c.answerFor('www.example.co.uk', 15).answer, { type: 'none' });
    assert.deepEqual(c.answerFor('co.uk', 16).answer, { type: 'none' });
    // The mail host has an address like any other name.
    assert.equal(c.answerFor('mx1.example.co.uk', 1).answer.type, 'A');
    c.sink.finish();
  });

  it('domains differ in their mail host, preference and SPF record', () => {
    const seed = Buffer.from('0123456789abcdef');
    const mails = Array.from({ length: 40 }, (_, i) => siteMail(`shop${i}.example.com`, seed));
    assert.ok(new Set(mails.map((m) => m.exchange.split('.')[0])).size >= 3);
    assert.ok(new Set(mails.map((m) => m.preference)).size >= 3);
    assert.ok(new Set(mails.map((m) => m.spf.replace(/shop\d+/, ''))).size >= 3);
    assert.deepEqual(siteMail('a.example.com', seed), siteMail('a.example.com', seed));
  });

  it('encodes MX (preference, name) and TXT (a length-prefixed string) answers', () => {
    const q = (name: string, qtype: number) => {
      const labels = name
        .split('.')
        .map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
      return Buffer.concat([
        Buffer.from([0, 9, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]),
        ...labels,
        Buffer.from([0, 0, qtype, 0, 1]),
      ]);
    };
    const mq = q('example.com', 15);
    const m = buildResponse(mq, parseQuery(mq), {
      type: 'MX',
      preference: 10,
      exchange: 'mx1.example.com',
    });
    assert.equal(m.readUInt16BE(6), 1, 'one answer');
    const rr = m.subarray(mq.length);
    assert.equal(rr.readUInt16BE(2), 15);
    const rdata = rr.subarray(12, 12 + rr.readUInt16BE(10));
    assert.equal(rdata.readUInt16BE(0), 10);
    assert.deepEqual(rdata.subarray(2), Buffer.from('\x03mx1\x07example\x03com\x00', 'latin1'));
    const tq = q('example.com', 16);
    const t = buildResponse(tq, parseQuery(tq), { type: 'TXT', text: 'v=spf1 mx ~all' });
    const trr = t.subarray(tq.length);
    assert.equal(trr.readUInt16BE(2), 16);
    assert.deepEqual(trr.subarray(12), Buffer.from('\x0ev=spf1 mx ~all', 'latin1'));
  });
});
