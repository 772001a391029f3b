// The one way the dashboard talks to the API: the person's Firebase ID token as the bearer, the chosen account in
// X-Qorch-Account, an Idempotency-Key on every POST (so a retry after a lost answer changes nothing twice), and
// refusals turned into ApiError carrying the problem+json body.

let base = '/v1';
let tokenSource = async () => null;
let account = null;

export function configure({ apiBase, token }) {
  base = apiBase.replace(/\/$/, '');
  tokenSource = token;
}

export const setAccount = (id) => { account = id; };
export const currentAccount = () => account;

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.code = problem.code;
  }
}

function newKey() {
  return crypto.randomUUID ? crypto.randomUUID()
    : Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
}

export async function call(method, path, { body, query, headers = {} } = {}) {
  const url = new URL(base + path, window.location.origin);
  for (const [k, v] of Object.entries(query || {})) if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, v);
  const hdrs = { Accept: 'application/json', ...headers };
  const token = await tokenSource();
  if (token) hdrs.Authorization = `Bearer ${token}`;
  if (account) hdrs['X-Qorch-Account'] = account;
  if (body !== undefined) hdrs['Content-Type'] = 'application/json';
  if (method === 'POST' && !hdrs['Idempotency-Key']) hdrs['Idempotency-Key'] = newKey();
  const init = { method, headers: hdrs, body: body === undefined ? undefined : JSON.stringify(body) };
  let response;
  for (let attempt = 0; ; attempt++) {
    try {
      response = await fetch(url, init);
    } catch (err) {
      if (attempt < 2) { await sleep(500 * (attempt + 1)); continue; }
      throw new ApiError(0, { title: 'The API cannot be reached', detail: String(err.message || err),
        code: 'network' });
    }
    // 503 means "retry after": the same Idempotency-Key makes a retried POST safe.
    if (response.status === 503 && attempt < 2) {
      await sleep(1000 * Math.min(5, Number(response.headers.get('Retry-After')) || 1));
      continue;
    }
    break;
  }
  if (response.status === 204) return null;
  const type = response.headers.get('Content-Type') || '';
  const data = type.includes('json') ? await response.json() : await response.text();
  if (!response.ok) {
    const problem = typeof data === 'object' && data ? data
      : { title: `HTTP ${response.status}`, detail: String(data).slice(0, 300), status: response.status };
    throw new ApiError(response.status, problem);
  }
  return data;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export const get = (path, query) => call('GET', path, { query });
export const post = (path, body) => call('POST', path, { body: body === undefined ? {} : body });
export const patch = (path, body) => call('PATCH', path, { body });
export const del = (path) => call('DELETE', path);

// Every page of a listing (for the timeline, which shows the whole log).
export async function all(path, field, query = {}) {
  const out = [];
  let token = null;
  do {
    const page = await get(path, { ...query, limit: 100, page_token: token });
    out.push(...page[field]);
    token = page.next_page_token;
  } while (token);
  return out;
}
