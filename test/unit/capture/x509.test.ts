import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { describe, it } from 'node:test';
import { CA_SUBJECT, RunCa } from '../../../src/capture/x509.js';

describe('the run CA', () => {
  const now = Date.UTC(2026, 11, 2, 12);
  const ca = new RunCa(now);
  const caCert = new X509Certificate(ca.certDer);

  it('is a self-signed P-256 CA with the fixed name, valid now', () => {
    assert.equal(caCert.ca, true);
    assert.equal(caCert.subject, `O=${CA_SUBJECT.o}\nCN=${CA_SUBJECT.cn}`);
    assert.equal(caCert.issuer, caCert.subject);
    assert.ok(caCert.verify(caCert.publicKey), 'signed by its own key');
    assert.equal(caCert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.ok(Date.parse(caCert.validFrom) < now && now < Date.parse(caCert.validTo));
    assert.equal(caCert.keyUsage, undefined, 'key usage is not an extended one');
    assert.ok(ca.certPem.startsWith('-----BEGIN CERTIFICATE-----\n'));
    assert.equal(new X509Certificate(ca.certPem).fingerprint256, caCert.fingerprint256);
  });

  it('is new each run: another key, another serial', () => {
    const other = new X509Certificate(new RunCa(now).certDer);
    assert.notEqual(other.serialNumber, caCert.serialNumber);
    assert.notEqual(
      other.publicKey.export({ format: 'der', type: 'spki' }).toString('hex'),
      caCert.publicKey.export({ format: 'der', type: 'spki' }).toString('hex'),
    );
  });

  it('signs a server certificate for a host name that a TLS client accepts for that name only', () => {
    const leaf = new X509Certificate(ca.leafFor('api.example.com'));
    assert.ok(leaf.verify(caCert.publicKey));
    assert.ok(leaf.checkIssued(caCert));
    assert.equal(leaf.ca, false);
    assert.equal(leaf.checkHost('api.example.com'), 'api.example.com');
    assert.equal(leaf.checkHost('other.example.com'), undefined);
    assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1']);
    assert.equal(leaf.subjectAltName, 'DNS:api.example.com');
    assert.ok(Date.parse(leaf.validFrom) < now && now < Date.parse(leaf.validTo));
  });

  it('signs certificates for IPv4 and IPv6 addresses (a client without a server name)', () => {
    const v4 = new X509Certificate(ca.leafFor('203.0.113.7'));
    assert.equal(v4.checkIP('203.0.113.7'), '203.0.113.7');
    assert.equal(v4.checkIP('203.0.113.8'), undefined);
    const v6 = new X509Certificate(ca.leafFor('2001:db8::7'));
    assert.equal(v6.checkIP('2001:db8::7'), '2001:db8::7');
    assert.equal(v6.subjectAltName, 'IP Address:2001:DB8:0:0:0:0:0:7');
  });

  it('gives one TLS context per name, whatever its case or trailing dot', () => {
    assert.equal(ca.contextFor('Api.Example.com.'), ca.contextFor('api.example.com'));
    assert.notEqual(ca.contextFor('a.example'), ca.contextFor('b.example'));
  });

  it('writes a long name as the certificate name cut to 64 characters, the full name as its SAN', () => {
    const long = `${'a'.repeat(60)}.${'b'.repeat(60)}.example`;
    const leaf = new X509Certificate(ca.leafFor(long));
    assert.equal(leaf.checkHost(long), long);
    assert.equal(leaf.subject, `CN=${long.slice(0, 64)}`);
  });
});
