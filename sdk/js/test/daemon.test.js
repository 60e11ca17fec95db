// The SDK against a real meshd daemon with the partners plugin. tests/partners/test_sdks.py starts the
// daemons and passes them in: MESHD_PARTNER_URL, MESHD_PARTNER_KEY, MESHD_PARTNER_ID, MESHD_PARTNER_REGION,
// MESHD_PARTNER_PLANS (two plans, comma-separated). Without them (plain `npm test`) these tests are skipped.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { MeshPartner, PartnerAPIError } from '../src/index.js';

const env = process.env;
const live = Boolean(env.MESHD_PARTNER_URL && env.MESHD_PARTNER_KEY && env.MESHD_PARTNER_ID);
const skip = live ? false : 'no daemon: MESHD_PARTNER_URL, MESHD_PARTNER_KEY and MESHD_PARTNER_ID are not set';

function client(options = {}) {
  return new MeshPartner({ apiKey: env.MESHD_PARTNER_KEY, partnerId: env.MESHD_PARTNER_ID, baseUrl: env.MESHD_PARTNER_URL,
    ...options });
}

test('create, list, get, change plan, brand, license, suspend and delete a tenant', { skip }, async () => {
  const api = client();
  const [first, second] = (env.MESHD_PARTNER_PLANS ?? 'starter,pro').split(',');
  const region = env.MESHD_PARTNER_REGION ?? 'eu-west-1';
  const created = await api.deployTenant({ name: 'Bistro JS', region, plan: first });
  assert.match(created.id, /^t_[a-z2-7]{16}$/);
  assert.deepEqual([created.partner, created.home, created.plan], [env.MESHD_PARTNER_ID, region, first]);

  const others = [];
  for (const name of ['JS two', 'JS three']) others.push(await api.deployTenant({ name, region, plan: first }));
  const listed = [];
  for await (const t of api.listTenants({ pageSize: 1 })) listed.push(t.id);
  for (const t of [created, ...others]) assert.ok(listed.includes(t.id), `${t.id} missing from the pages`);
  assert.equal(new Set(listed).size, listed.length, 'a tenant came back on two pages');

  assert.deepEqual(await api.getTenant(created.id), created);
  const changed = await api.changePlan(created.id, second, { expectedRevision: created.revision });
  assert.equal(changed.plan, second);
  await assert.rejects(api.changePlan(created.id, first, { expectedRevision: created.revision }),
    (error) => error instanceof PartnerAPIError && error.status === 409 && error.code === 'conflict');

  const branded = await api.setBranding(created.id, { primary_color: '#0a0b0c', company_name: 'Bistro JS SA' });
  assert.equal(branded.branding.company_name, 'Bistro JS SA');
  const license = await api.issueLicense(created.id, second, { features: ['sso'] });
  assert.equal(license.token.split('.').length, 3);
  assert.ok(Date.parse(license.expires_at) > Date.now());

  assert.equal((await api.suspendTenant(created.id)).status, 'suspended');
  const metrics = await api.getMetrics();
  assert.ok(metrics.tenants.by_status.suspended >= 1);
  assert.equal((await api.deleteTenant(created.id)).status, 'deleted');
  await assert.rejects(api.getTenant(created.id), (error) => error.status === 404 && error.code === 'not_found');
  for (const t of others) await api.deleteTenant(t.id);
});

test('a refused create throws the problem with its title in the caller language', { skip }, async () => {
  const api = client({ lang: 'de' });
  await assert.rejects(api.deployTenant({ name: 'Nowhere', region: 'mars-1', plan: 'pro' }), (error) => {
    assert.ok(error instanceof PartnerAPIError);
    assert.deepEqual([error.status, error.code, error.field], [422, 'unknown_region', 'region']);
    assert.ok(error.title.length > 0 && error.title !== 'Unknown region', `title not in German: ${error.title}`);
    return true;
  });
});

test('a wrong key is refused with 401 and not retried into a lockout', { skip }, async () => {
  const api = new MeshPartner({ apiKey: `mpk_aaaaaaaaaaaa_${'A'.repeat(32)}`, partnerId: env.MESHD_PARTNER_ID,
    baseUrl: env.MESHD_PARTNER_URL });
  await assert.rejects(api.getMetrics(), (error) => error.status === 401 && error.code === 'unauthorized');
});
