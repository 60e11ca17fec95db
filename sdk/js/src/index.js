// Client for the meshd partner API (/v1), on Node 20's fetch and nothing else.

import { randomUUID } from 'node:crypto';

const RETRIED_STATUSES = new Set([429, 502, 503, 504]);
const PROBLEM_PREFIX = 'https://meshd.dev/problems/';
export const VERSION = '0.1.0';

// Every operation of the API (its operationId in /v1/openapi.json) and the method that calls it;
// the test suite checks this against the document a real daemon serves.
export const OPERATIONS = Object.freeze({
  createTenant: 'deployTenant',
  listTenants: 'listTenants',
  getTenant: 'getTenant',
  changePlan: 'changePlan',
  suspendTenant: 'suspendTenant',
  deleteTenant: 'deleteTenant',
  setBranding: 'setBranding',
  issueLicense: 'issueLicense',
  getMetrics: 'getMetrics',
  listKeys: 'listKeys',
  createKey: 'createKey',
  revokeKey: 'revokeKey',
});

/** The API answered with an error: an RFC 9457 problem, or a bare HTTP error from a proxy. */
export class PartnerAPIError extends Error {
  constructor({ status, type = 'about:blank', title, detail = null, field = null, retryAfter = null }) {
    let message = `${status} ${title}`;
    if (detail) message += `: ${detail}`;
    if (field) message += ` (field ${field})`;
    super(message);
    this.name = 'PartnerAPIError';
    this.status = status;
    this.type = type;
    this.title = title;
    this.detail = detail;
    this.field = field;
    this.retryAfter = retryAfter;
  }

  /** The problem's short name (not_found, rate_limited...), or http_<status> without one. */
  get code() {
    return this.type.startsWith(PROBLEM_PREFIX) ? this.type.slice(PROBLEM_PREFIX.length) : `http_${this.status}`;
  }
}

/** The API could not be reached (refused, timed out, TLS), after every retry. */
export class PartnerConnectionError extends Error {
  constructor(message, cause) {
    super(message, { cause });
    this.name = 'PartnerConnectionError';
  }
}

/** Retry-After as seconds from now (delta-seconds or an HTTP date); null when absent or unreadable. */
export function parseRetryAfter(value, now = Date.now()) {
  if (value == null) return null;
  const text = String(value).trim();
  if (/^\d+$/.test(text)) return Number(text);
  const when = Date.parse(text);
  if (Number.isNaN(when)) return null;
  return Math.max(0, (when - now) / 1000);
}

function tenantPath(id) {
  if (!id) throw new TypeError('tenant id is empty');
  return `/v1/tenants/${encodeURIComponent(id)}`;
}

function refusedConnection(error) {
  // Node's fetch wraps the socket error: a refused connection never reached the server.
  const code = error?.cause?.code ?? error?.cause?.cause?.code;
  return code === 'ECONNREFUSED';
}

async function problemFrom(response) {
  const retryAfter = parseRetryAfter(response.headers.get('retry-after'));
  const text = await response.text();
  let problem = null;
  try {
    problem = text ? JSON.parse(text) : null;
  } catch {
    problem = null;
  }
  if (!problem || typeof problem !== 'object' || !('title' in problem)) {
    return new PartnerAPIError({ status: response.status, title: response.statusText || String(response.status), retryAfter });
  }
  return new PartnerAPIError({
    status: Number(problem.status ?? response.status),
    type: String(problem.type ?? 'about:blank'),
    title: String(problem.title),
    detail: problem.detail ?? null,
    field: problem.field ?? null,
    retryAfter,
  });
}

export class MeshPartner {
  #apiKey;
  #fetch;

  /**
   * @param {object} options
   * @param {string} options.apiKey   mpk_<key id>_<secret>
   * @param {string} options.partnerId
   * @param {string} [options.baseUrl]  default http://127.0.0.1:7480
   * @param {string} [options.lang]     Accept-Language for problem titles (en, fr, es, de, ar)
   * @param {number} [options.timeout]  per request, in milliseconds
   * @param {{attempts?: number, baseDelay?: number, maxDelay?: number}} [options.retry]  delays in milliseconds
   */
  constructor({ apiKey, partnerId, baseUrl = 'http://127.0.0.1:7480', lang, timeout = 10_000, retry = {}, fetch } = {}) {
    if (!apiKey) throw new TypeError('apiKey is required');
    if (!partnerId) throw new TypeError('partnerId is required');
    if (!/^https?:\/\//.test(baseUrl)) throw new TypeError(`baseUrl must start with http:// or https://, not ${baseUrl}`);
    this.#apiKey = apiKey;
    this.#fetch = fetch ?? globalThis.fetch;
    this.partnerId = partnerId;
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.lang = lang;
    this.timeout = timeout;
    this.retry = { attempts: 4, baseDelay: 200, maxDelay: 30_000, ...retry };
  }

  // The key stays out of console.log and JSON.stringify (it is a private field).
  toJSON() {
    return { partnerId: this.partnerId, baseUrl: this.baseUrl };
  }

  #backoff(attempt) {
    // Full jitter: clients retrying together spread out instead of returning in step.
    const cap = Math.min(this.retry.maxDelay, this.retry.baseDelay * 2 ** (attempt - 1));
    return Math.random() * cap;
  }

  /** Sends one call, again after a retryable failure with the same body and Idempotency-Key. */
  async #send({ method, path, query, body, headers = {}, resendable = true }) {
    const url = new URL(this.baseUrl + path);
    for (const [name, value] of Object.entries(query ?? {})) {
      if (value !== undefined && value !== null) url.searchParams.set(name, String(value));
    }
    const allHeaders = {
      Authorization: `Bearer ${this.#apiKey}`,
      'Meshd-Partner': this.partnerId,
      Accept: 'application/json, application/problem+json',
      'User-Agent': `meshd-partner-js/${VERSION}`,
      ...headers,
    };
    if (this.lang) allHeaders['Accept-Language'] = this.lang;
    if (body !== undefined) allHeaders['Content-Type'] = 'application/json';
    const payload = body === undefined ? undefined : JSON.stringify(body);
    for (let attempt = 1; ; attempt++) {
      let response;
      try {
        response = await this.#fetch(url, { method, headers: allHeaders, body: payload, signal: AbortSignal.timeout(this.timeout) });
      } catch (error) {
        const retry = attempt < this.retry.attempts && (refusedConnection(error) || resendable);
        if (!retry) {
          throw new PartnerConnectionError(`${this.baseUrl} unreachable after ${attempt} attempt(s): ${error?.cause?.code ?? error?.name}`, error);
        }
        await sleep(this.#backoff(attempt));
        continue;
      }
      if (response.ok) {
        const text = await response.text();
        return text ? JSON.parse(text) : null;
      }
      if (RETRIED_STATUSES.has(response.status) && attempt < this.retry.attempts) {
        const retryAfter = parseRetryAfter(response.headers.get('retry-after'));
        // The server's Retry-After is the wait; one longer than maxDelay is not waited out but raised.
        if (retryAfter === null || retryAfter * 1000 <= this.retry.maxDelay) {
          await response.arrayBuffer();
          await sleep(retryAfter === null ? this.#backoff(attempt) : retryAfter * 1000);
          continue;
        }
      }
      throw await problemFrom(response);
    }
  }

  /** A new tenant homed in region (its residency is the region's jurisdiction); one Idempotency-Key for all retries. */
  async deployTenant({ name, region, plan, branding, currency, residency }) {
    const body = { name, region, plan };
    if (branding) body.branding = branding;
    if (currency) body.currency = currency;
    if (residency) body.residency = residency;
    return this.#send({ method: 'POST', path: '/v1/tenants', body, headers: { 'Idempotency-Key': randomUUID() } });
  }

  /** One page: {items, next_cursor}. */
  async listTenantsPage({ status, cursor, limit } = {}) {
    return this.#send({ method: 'GET', path: '/v1/tenants', query: { status, cursor, limit } });
  }

  /** Every tenant of the partner (optionally of one status), fetching page after page as it is iterated. */
  async *listTenants({ status, pageSize } = {}) {
    let cursor;
    do {
      const page = await this.listTenantsPage({ status, cursor, limit: pageSize });
      yield* page.items;
      cursor = page.next_cursor;
    } while (cursor);
  }

  async getTenant(id) {
    return this.#send({ method: 'GET', path: tenantPath(id) });
  }

  async changePlan(id, plan, { expectedRevision } = {}) {
    const headers = expectedRevision === undefined ? {} : { 'If-Match': `"${expectedRevision}"` };
    return this.#send({ method: 'PATCH', path: tenantPath(id), body: { plan }, headers });
  }

  async suspendTenant(id) {
    return this.#send({ method: 'POST', path: `${tenantPath(id)}/suspend` });
  }

  /** A repeated DELETE may answer 404 for what the first one deleted: not resent after a timeout. */
  async deleteTenant(id) {
    return this.#send({ method: 'DELETE', path: tenantPath(id), resendable: false });
  }

  async issueLicense(tenant, plan, { features, expiresInDays } = {}) {
    const body = { tenant, plan };
    if (features) body.features = features;
    if (expiresInDays !== undefined) body.expires_in_days = expiresInDays;
    return this.#send({ method: 'POST', path: '/v1/licenses', body, headers: { 'Idempotency-Key': randomUUID() } });
  }

  async setBranding(tenant, { primary_color, company_name, logo_url }) {
    const body = { primary_color, company_name };
    if (logo_url) body.logo_url = logo_url;
    return this.#send({ method: 'PUT', path: `${tenantPath(tenant)}/branding`, body });
  }

  async getMetrics() {
    return this.#send({ method: 'GET', path: '/v1/metrics' });
  }

  async listKeys() {
    return (await this.#send({ method: 'GET', path: '/v1/keys' })).items;
  }

  async createKey({ role = 'read' } = {}) {
    return this.#send({ method: 'POST', path: '/v1/keys', body: { role }, headers: { 'Idempotency-Key': randomUUID() } });
  }

  async revokeKey(keyId) {
    if (!keyId) throw new TypeError('key id is empty');
    return this.#send({ method: 'DELETE', path: `/v1/keys/${encodeURIComponent(keyId)}` });
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
