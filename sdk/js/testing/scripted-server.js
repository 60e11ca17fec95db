// A real HTTP server on a local socket that answers from a script, for the unit tests.
import { createServer } from 'node:http';

export function problem(status, code, title, { detail, field, headers } = {}) {
  const body = { type: `https://meshd.dev/problems/${code}`, title, status };
  if (detail) body.detail = detail;
  if (field) body.field = field;
  return { status, body, headers, contentType: 'application/problem+json' };
}

export async function startServer() {
  const routes = new Map();
  const seen = [];
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, 'http://localhost');
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const raw = Buffer.concat(chunks).toString();
    const request = {
      method: req.method, path: url.pathname, query: Object.fromEntries(url.searchParams),
      headers: req.headers, body: raw ? JSON.parse(raw) : undefined,
    };
    seen.push(request);
    const responder = routes.get(`${req.method} ${url.pathname}`);
    const reply = responder ? responder(request) : problem(404, 'not_found', 'Not found');
    const payload = reply.body === undefined ? '' : (typeof reply.body === 'string' ? reply.body : JSON.stringify(reply.body));
    const headers = { ...(reply.headers ?? {}) };
    if (payload) headers['Content-Type'] = reply.contentType ?? 'application/json';
    res.writeHead(reply.status, headers);
    res.end(payload);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    seen,
    // Replies in turn, the last one repeating; a function is called with the request.
    script(method, path, ...replies) {
      const queue = [...replies];
      routes.set(`${method} ${path}`, (request) => {
        const next = queue.length > 1 ? queue.shift() : queue[0];
        return typeof next === 'function' ? next(request) : next;
      });
    },
    requests(method, path) {
      return seen.filter((s) => s.method === method && s.path === path);
    },
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

export function tenant(id = 't_aaaaaaaaaaaaaaaa', over = {}) {
  return {
    id, name: 'Bistro', partner: 'acme', plan: 'pro', residency: 'EU', home: 'eu-west-1', status: 'active',
    branding: null, created: '2026-12-07T00:00:00Z', updated: '2026-12-07T00:00:00Z', revision: 1, ...over,
  };
}
