// Types of the meshd partner API client (src/index.js).

export type TenantStatus = 'provisioning' | 'active' | 'suspended' | 'deleted';
export type Role = 'admin' | 'deployer' | 'read';

export interface Branding {
  /** "#RRGGBB" */
  primary_color: string;
  /** 1..100 characters */
  company_name: string;
  /** an https URL */
  logo_url?: string | null;
}

export interface Tenant {
  id: string;
  name: string | null;
  partner: string | null;
  plan: string | null;
  /** jurisdiction code of the region map (US, EU, CA, BH, SG...) */
  residency: string;
  home: string | null;
  status: TenantStatus;
  branding: Branding | null;
  /** RFC 3339 */
  created: string | null;
  updated: string | null;
  revision: number;
}

export interface TenantPage {
  items: Tenant[];
  next_cursor: string | null;
}

export interface License {
  /** an EdDSA (Ed25519) JWT, verifiable offline with the federation's public key */
  token: string;
  expires_at: string;
}

export interface Metrics {
  tenants: {
    total?: number;
    by_status: Record<string, number>;
    by_region: Record<string, number>;
    by_plan: Record<string, number>;
  };
  usage: Record<string, unknown> | null;
  mrr: Record<string, unknown> | null;
  /** why a field is null */
  reasons: Record<string, string>;
}

export interface ApiKey {
  key_id: string;
  partner: string;
  role: Role;
  created: string;
  revoked: string | null;
  /** the whole key, only in the answer to its creation */
  key?: string;
}

export interface RetryOptions {
  /** sends at most, the first included (default 4) */
  attempts?: number;
  /** milliseconds; backoff is full jitter over baseDelay * 2^(attempt-1) (default 200) */
  baseDelay?: number;
  /** milliseconds; a longer Retry-After is raised, not waited out (default 30000) */
  maxDelay?: number;
}

export interface MeshPartnerOptions {
  apiKey: string;
  partnerId: string;
  /** default http://127.0.0.1:7480 */
  baseUrl?: string;
  /** Accept-Language for problem titles: en, fr, es, de, ar */
  lang?: string;
  /** milliseconds per request (default 10000) */
  timeout?: number;
  retry?: RetryOptions;
  fetch?: typeof globalThis.fetch;
}

export interface DeployTenant {
  name: string;
  region: string;
  plan: string;
  branding?: Branding;
  currency?: string;
  residency?: string;
}

export declare const VERSION: string;
/** operationId of /v1/openapi.json -> method name */
export declare const OPERATIONS: Readonly<Record<string, keyof MeshPartner>>;

export declare function parseRetryAfter(value: string | null | undefined, now?: number): number | null;

export declare class PartnerAPIError extends Error {
  constructor(init: { status: number; type?: string; title: string; detail?: string | null; field?: string | null;
                      retryAfter?: number | null });
  readonly status: number;
  readonly type: string;
  readonly title: string;
  readonly detail: string | null;
  readonly field: string | null;
  /** seconds, from Retry-After */
  readonly retryAfter: number | null;
  /** not_found, rate_limited, ... or http_<status> */
  readonly code: string;
}

export declare class PartnerConnectionError extends Error {
  constructor(message: string, cause?: unknown);
}

export declare class MeshPartner {
  constructor(options: MeshPartnerOptions);
  readonly partnerId: string;
  readonly baseUrl: string;
  deployTenant(tenant: DeployTenant): Promise<Tenant>;
  listTenantsPage(query?: { status?: TenantStatus; cursor?: string; limit?: number }): Promise<TenantPage>;
  listTenants(query?: { status?: TenantStatus; pageSize?: number }): AsyncGenerator<Tenant, void, undefined>;
  getTenant(id: string): Promise<Tenant>;
  changePlan(id: string, plan: string, options?: { expectedRevision?: number }): Promise<Tenant>;
  suspendTenant(id: string): Promise<Tenant>;
  deleteTenant(id: string): Promise<Tenant>;
  issueLicense(tenant: string, plan: string, options?: { features?: string[]; expiresInDays?: number }): Promise<License>;
  setBranding(tenant: string, branding: Branding): Promise<Tenant>;
  getMetrics(): Promise<Metrics>;
  listKeys(): Promise<ApiKey[]>;
  createKey(options?: { role?: Role }): Promise<ApiKey>;
  revokeKey(keyId: string): Promise<ApiKey>;
}
