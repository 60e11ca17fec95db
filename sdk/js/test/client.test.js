// The JavaScript SDK against a real HTTP server on a local socket: retries, idempotency, pagination, errors.
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';

import { MeshPartner, OPERATIONS, PartnerAPIError, PartnerConnectionError, parseRetryAfter } from '../src/index.js';
import { problem, startServer, tenant } from '../testing/scripted-server.js';

const KEY = `mpk_abcdefghijkl_${'x'.repeat(32)}`;
let server;

before(async () => { server = await startServer(); });
after(async () => { await server.close(); });
beforeEach(() => { server.seen.length = 0; });

function client(options = {}) {
  return new MeshPartner({ apiKey: KEY, partnerId: 'acme', baseUrl: server.url, retry: { baseDelay: 5 }, ...options });
}

test('a create retried after 429 waits Retry-After and resends the same Idempotency-Key', async () => {
  server.script('POST', '/v1/tenants', problem(429, 'rate_limited', 'Too many requests', { headers: { 'Retry-After': '1' } }),
    { status: 201, body: tenant() });
  const started = Date.now();
  const created = await client().deployTenant({ name: 'Bistro', region: 'eu-west-1', plan: 'pro',
    branding: { primary_color: '#112233', company_name: 'Bistro SA' } });
  const sent = server.requests('POST', '/v1/tenants');
  assert.equal(created.id, 't_aaaaaaaaaaaaaaaa');
  assert.equal(sent.length, 2);
  assert.equal(sent[0].headers['idempotency-key'], sent[1].headers['idempotency-key']);
  assert.match(sent[0].headers['idempotency-key'], /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.deepEqual(sent[1].body, { name: 'Bistro', region: 'eu-west-1', plan: 'pro',
    branding: { primary_color: '#112233', company_name: 'Bistro SA' } });
  assert.ok(Date.now() - started >= 1000, 'did not wait the Retry-After');
});

test('two creates never share an Idempotency-Key', async () => {
  server.script('POST', '/v1/tenants', { status: 201, body: tenant() });
  const api = client();
  await api.deployTenant({ name: 'A', region: 'eu-west-1', plan: 'pro' });
  await api.deployTenant({ name: 'B', region: 'eu-west-1', plan: 'pro' });
  const [a, b] = server.requests('POST', '/v1/tenants').map((s) => s.headers['idempotency-key']);
  assert.notEqual(a, b);
});

test('retries are bounded and the last error is thrown with its problem', async () => {
  server.script('GET', '/v1/metrics', problem(503, 'unavailable', 'Service unavailable', { detail: 'registry down' }));
  await assert.rejects(client({ retry: { attempts: 3, baseDelay: 5 } }).getMetrics(), (error) => {
    assert.ok(error instanceof PartnerAPIError);
    assert.equal(error.status, 503);
    assert.equal(error.detail, 'registry down');
    return true;
  });
  assert.equal(server.requests('GET', '/v1/metrics').length, 3);
});

test('a 502 from a proxy (HTML, no problem) is retried', async () => {
  server.script('GET', '/v1/tenants/t_b', { status: 502, body: '<html>bad gateway</html>', contentType: 'text/html' },
    { status: 200, body: tenant('t_b') });
  assert.equal((await client().getTenant('t_b')).id, 't_b');
  assert.equal(server.requests('GET', '/v1/tenants/t_b').length, 2);
});

test('a Retry-After longer than maxDelay is thrown, not waited', async () => {
  server.script('GET', '/v1/metrics', problem(429, 'rate_limited', 'Too many requests', { headers: { 'Retry-After': '3600' } }));
  const started = Date.now();
  await assert.rejects(client().getMetrics(), (error) => error.code === 'rate_limited' && error.retryAfter === 3600);
  assert.ok(Date.now() - started < 2000);
  assert.equal(server.requests('GET', '/v1/metrics').length, 1);
});

test('client errors are not retried and carry type, title, detail and field', async () => {
  server.script('PUT', '/v1/tenants/t_x/branding',
    problem(422, 'bad_color', 'Bad colour', { detail: '#12345 is not #RRGGBB', field: 'primary_color' }));
  await assert.rejects(client().setBranding('t_x', { primary_color: '#12345', company_name: 'Bistro' }), (error) => {
    assert.deepEqual([error.status, error.code, error.title, error.field], [422, 'bad_color', 'Bad colour', 'primary_color']);
    assert.match(error.message, /#12345 is not #RRGGBB/);
    return true;
  });
  assert.equal(server.requests('PUT', '/v1/tenants/t_x/branding').length, 1);
});

test('listTenants follows next_cursor through every page', async () => {
  const ids = Array.from({ length: 7 }, (_, i) => `t_${String(i).padStart(16, '0')}`);
  server.script('GET', '/v1/tenants', (request) => {
    const start = Number(request.query.cursor ?? 0);
    const end = start + 3;
    return { status: 200, body: { items: ids.slice(start, end).map((id) => tenant(id)), next_cursor: end < ids.length ? String(end) : null } };
  });
  const got = [];
  for await (const t of client().listTenants({ status: 'active', pageSize: 3 })) got.push(t.id);
  assert.deepEqual(got, ids);
  const sent = server.requests('GET', '/v1/tenants');
  assert.deepEqual(sent.map((s) => s.query.cursor), [undefined, '3', '6']);
  assert.ok(sent.every((s) => s.query.status === 'active' && s.query.limit === '3'));
});

test('every request names the partner, its key and the caller language; the key stays private', async () => {
  server.script('PATCH', '/v1/tenants/t_p', { status: 200, body: tenant('t_p', { plan: 'scale', revision: 4 }) });
  const api = client({ lang: 'fr' });
  const changed = await api.changePlan('t_p', 'scale', { expectedRevision: 3 });
  const [seen] = server.requests('PATCH', '/v1/tenants/t_p');
  assert.equal(seen.headers.authorization, `Bearer ${KEY}`);
  assert.equal(seen.headers['meshd-partner'], 'acme');
  assert.equal(seen.headers['if-match'], '"3"');
  assert.equal(seen.headers['accept-language'], 'fr');
  assert.deepEqual(seen.body, { plan: 'scale' });
  assert.equal(changed.revision, 4);
  assert.ok(!JSON.stringify(api).includes(KEY));
});

test('suspend, delete, license and keys reach their routes', async () => {
  server.script('POST', '/v1/tenants/a%2Fb/suspend', { status: 200, body: tenant('a/b', { status: 'suspended' }) });
  server.script('DELETE', '/v1/tenants/t_d', { status: 200, body: tenant('t_d', { status: 'deleted' }) });
  server.script('POST', '/v1/licenses', { status: 201, body: { token: 'h.p.s', expires_at: '2027-01-01T00:00:00Z' } });
  const key = { key_id: 'abcdefghijkm', partner: 'acme', role: 'read', created: '2026-12-07T00:00:00Z', revoked: null };
  server.script('GET', '/v1/keys', { status: 200, body: { items: [key] } });
  server.script('POST', '/v1/keys', { status: 201, body: { ...key, key: 'mpk_secret' } });
  server.script('DELETE', '/v1/keys/abcdefghijkm', { status: 200, body: { ...key, revoked: '2026-12-07T01:00:00Z' } });
  const api = client();
  assert.equal((await api.suspendTenant('a/b')).status, 'suspended');
  assert.equal((await api.deleteTenant('t_d')).status, 'deleted');
  const license = await api.issueLicense('t_d', 'pro', { features: ['sso'], expiresInDays: 30 });
  assert.equal(license.token, 'h.p.s');
  assert.deepEqual(server.requests('POST', '/v1/licenses')[0].body, { tenant: 't_d', plan: 'pro', features: ['sso'], expires_in_days: 30 });
  assert.ok(server.requests('POST', '/v1/licenses')[0].headers['idempotency-key']);
  assert.deepEqual((await api.listKeys()).map((k) => k.key_id), ['abcdefghijkm']);
  assert.equal((await api.createKey({ role: 'read' })).key, 'mpk_secret');
  assert.ok((await api.revokeKey('abcdefghijkm')).revoked);
});

test('an unreachable server throws PartnerConnectionError after the retries', async () => {
  const other = await startServer();
  const url = other.url;
  await other.close();
  await assert.rejects(client({ baseUrl: url, retry: { attempts: 2, baseDelay: 5 } }).getMetrics(), (error) => {
    assert.ok(error instanceof PartnerConnectionError);
    assert.match(error.message, /2 attempt\(s\)/);
    assert.ok(!error.message.includes(KEY));
    return true;
  });
});

test('bad construction arguments and ids are refused before any request', async () => {
  assert.throws(() => new MeshPartner({ apiKey: KEY, partnerId: 'acme', baseUrl: 'localhost:7480' }), /baseUrl/);
  assert.throws(() => new MeshPartner({ partnerId: 'acme' }), /apiKey/);
  await assert.rejects(client().getTenant(''), /tenant id is empty/);
  assert.equal(server.seen.length, 0);
});

test('Retry-After reads seconds and HTTP dates', () => {
  assert.equal(parseRetryAfter('7'), 7);
  assert.equal(parseRetryAfter('Wed, 21 Oct 2015 07:28:10 GMT', Date.parse('Wed, 21 Oct 2015 07:28:00 GMT')), 10);
  assert.equal(parseRetryAfter('soon'), null);
  assert.equal(parseRetryAfter(null), null);
});

test('every operation of the table has a method', () => {
  for (const [operation, method] of Object.entries(OPERATIONS)) {
    assert.equal(typeof MeshPartner.prototype[method], 'function', `${operation} -> ${method}`);
  }
});

test('index.d.ts declares every method of the table', async () => {
  const { readFile } = await import('node:fs/promises');
  const declarations = await readFile(new URL('../index.d.ts', import.meta.url), 'utf8');
  const missing = Object.values(OPERATIONS).filter((method) => !new RegExp(`^  ${method}\\(`, 'm').test(declarations));
  assert.deepEqual(missing, []);
});
