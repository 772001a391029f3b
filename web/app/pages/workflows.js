// The workflows list: filters (state, role, one label, a search in titles), newest first, a page at a time, and a
// form for a new workflow. The first page refreshes itself while it is open, so agents' moves show up.
import * as api from '../api.js';
import { isOwner, roles } from '../main.js';
import {
  PHASES, ago, confirmDialog, emptyState, h, money, pretty, problemBox, progress, replace, stateBadge, when,
} from '../ui.js';

const PAGE = 20;
const STATES = [...PHASES, 'COMPLETED', 'CANCELLED', 'FAILED'];
const ROLES = ['Q_ASSISTANT', 'ARCHITECT', 'DEVELOPER', 'TESTER', 'VERIFIER', 'CUSTOMER', 'DEVOPS'];
const REFRESH_MS = 5000;

export function holder(wf) {
  const ho = wf.current_handoff;
  if (!ho) return wf.final ? '—' : pretty(wf.role || '');
  if (ho.status === 'CLAIMED') return h('span', { class: 'holder' }, ho.agent_id || ho.claimed_by,
    h('span', { class: 'muted small' }, ` · ${pretty(wf.role)}`));
  return h('span', { class: 'muted' }, `Waiting for ${pretty(wf.role)}`);
}

export function cost(wf) {
  const spent = wf.usage ? wf.usage.cost_usd : null;
  const max = wf.budget ? wf.budget.max_cost_usd : null;
  if (spent === null || spent === undefined) return '—';
  return max ? `${money(spent)} of ${money(max)}` : money(spent);
}

export default async function workflows(root, { query, navigate }) {
  const filters = { q: query.q || '', state: query.state || '', role: query.role || '', label: query.label || '' };
  const cursors = [null]; // the cursor of each page shown so far: "Previous" walks back through them
  let page = 0;
  let nextCursor = null;
  let timer = null;
  let stopped = false;

  const table = h('div', { class: 'list', 'aria-live': 'polite', 'aria-busy': 'true' });
  const pager = h('nav', { class: 'row pager', 'aria-label': 'Pages' });
  const field = (id, label, input) => h('div', { class: 'field' }, h('label', { for: id }, label), input);
  const q = h('input', { id: 'f-q', type: 'search', value: filters.q, placeholder: 'Title contains…' });
  const st = h('select', { id: 'f-state' }, h('option', { value: '' }, 'Any state'),
    STATES.map((s) => h('option', { value: s, selected: s === filters.state }, pretty(s))));
  const rl = h('select', { id: 'f-role' }, h('option', { value: '' }, 'Any role'),
    ROLES.map((r) => h('option', { value: r, selected: r === filters.role }, pretty(r))));
  const lb = h('input', { id: 'f-label', value: filters.label, placeholder: 'team:web', pattern: '[a-z0-9_\\-]{1,63}:.*' });
  const form = h('form', { class: 'filters', role: 'search', onsubmit: (e) => { e.preventDefault(); apply(); } },
    field('f-q', 'Search titles', q), field('f-state', 'State', st), field('f-role', 'Role', rl),
    field('f-label', 'Label', lb),
    h('button', { class: 'btn', type: 'submit' }, 'Filter'));
  st.addEventListener('change', apply);
  rl.addEventListener('change', apply);

  const newBtn = isOwner() ? h('button', { class: 'btn primary', type: 'button', onclick: () => create(navigate) },
    'New workflow') : null;
  replace(root,
    h('div', { class: 'row between' }, h('h1', {}, 'Workflows'), newBtn),
    roles().includes('VIEWER') ? h('p', { class: 'muted small' }, 'You have read-only access to this account.') : null,
    form, table, pager);

  function apply() {
    Object.assign(filters, { q: q.value.trim(), state: st.value, role: rl.value, label: lb.value.trim() });
    const params = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
    window.history.replaceState({}, '', params.size ? `/?${params}` : '/');
    cursors.length = 1;
    page = 0;
    load(true);
  }

  async function fetchPage(cursor) {
    const base = { state: filters.state, role: filters.role, label: filters.label };
    if (!filters.q) {
      const r = await api.get('/workflows', { ...base, limit: PAGE, page_token: cursor });
      return { rows: r.workflows, next: r.next_page_token };
    }
    // The API has no text search: scan pages of 100, newest first, keeping matches. The cursor is the server's
    // page token plus how many of that page were already looked at, so "Next" resumes mid-page.
    const needle = filters.q.toLocaleLowerCase();
    const rows = [];
    let at = cursor ? JSON.parse(cursor) : { t: null, skip: 0 };
    for (let scanned = 0; scanned < 20; scanned++) {
      const r = await api.get('/workflows', { ...base, limit: 100, page_token: at.t });
      for (let i = at.skip; i < r.workflows.length; i++) {
        if (!r.workflows[i].title.toLocaleLowerCase().includes(needle)) continue;
        rows.push(r.workflows[i]);
        if (rows.length === PAGE) {
          const more = i + 1 < r.workflows.length || r.next_page_token;
          return { rows, next: more ? JSON.stringify({ t: at.t, skip: i + 1 }) : null };
        }
      }
      if (!r.next_page_token) return { rows, next: null };
      at = { t: r.next_page_token, skip: 0 };
    }
    return { rows, next: JSON.stringify(at) };
  }

  async function load(showBusy) {
    clearTimeout(timer);
    if (showBusy) table.setAttribute('aria-busy', 'true');
    try {
      const { rows, next } = await fetchPage(cursors[page]);
      if (stopped) return;
      nextCursor = next;
      // A refresh must not pull the rug from under someone using the keyboard in the table.
      if (showBusy || !table.contains(document.activeElement)) replace(table, renderRows(rows));
      renderPager();
    } catch (err) {
      if (stopped) return;
      replace(table, problemBox(err));
    }
    table.setAttribute('aria-busy', 'false');
    if (page === 0 && !filters.q && !stopped) timer = setTimeout(() => load(false), REFRESH_MS);
  }

  function renderPager() {
    replace(pager,
      h('button', { class: 'btn', type: 'button', disabled: page === 0, onclick: () => { page--; load(true); } },
        '← Newer'),
      h('span', { class: 'muted small' }, `Page ${page + 1}`),
      h('button', { class: 'btn', type: 'button', disabled: !nextCursor, onclick: () => {
        cursors[page + 1] = nextCursor;
        page++;
        load(true);
      } }, 'Older →'));
  }

  function renderRows(rows) {
    if (!rows.length) {
      const filtered = Object.values(filters).some(Boolean);
      return emptyState(filtered ? 'No workflow matches these filters.' : 'No workflows yet.',
        !filtered && newBtn ? h('p', {}, 'Start one with “New workflow”: the Q Assistant picks it up first.') : null);
    }
    return h('table', { class: 'wf-table' },
      h('caption', { class: 'sr-only' }, 'Workflows, most recently changed first'),
      h('thead', {}, h('tr', {}, ['Workflow', 'State', 'Progress', 'Retries', 'Cost', 'Held by', 'Updated']
        .map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows.map((wf) => h('tr', { 'data-id': wf.id },
        h('td', { 'data-label': 'Workflow' }, h('a', { href: `/workflows/${wf.id}`, class: 'title' }, wf.title),
          Object.entries(wf.labels || {}).map(([k, v]) => h('span', { class: 'label' }, `${k}:${v}`))),
        h('td', { 'data-label': 'State' }, stateBadge(wf.state)),
        h('td', { 'data-label': 'Progress' }, progress(wf.state)),
        h('td', { 'data-label': 'Retries', class: wf.retry_count ? 'warn-text' : '' },
          `${wf.retry_count} of ${wf.max_retries}`),
        h('td', { 'data-label': 'Cost' }, cost(wf)),
        h('td', { 'data-label': 'Held by' }, holder(wf)),
        h('td', { 'data-label': 'Updated' }, h('time', { datetime: wf.updated_at, title: when(wf.updated_at) },
          ago(wf.updated_at)))))));
  }

  await load(true);
  return () => { stopped = true; clearTimeout(timer); };
}

async function create(navigate) {
  const made = await confirmDialog({
    title: 'New workflow',
    body: h('p', { class: 'muted' }, 'Describe what to build. The Q Assistant starts with discovery.'),
    confirm: 'Create workflow',
    fields: [
      { name: 'title', label: 'Title', required: true, placeholder: 'Web shop for hats' },
      { name: 'description', label: 'Description', type: 'textarea', placeholder: 'What should it do, for whom?' },
      { name: 'labels', label: 'Labels', placeholder: 'team:web, priority:high', hint: 'key:value, separated by commas' },
      { name: 'max_retries', label: 'Retries allowed', type: 'number', min: 0, step: 1, value: 3 },
      { name: 'max_cost_usd', label: 'Budget (USD, optional)', type: 'number', min: 0, step: '0.01' },
    ],
    run: async (v) => {
      const labels = {};
      for (const pair of v.labels.split(',').map((x) => x.trim()).filter(Boolean)) {
        const i = pair.indexOf(':');
        if (i < 1) throw { problem: { title: 'Labels', detail: `“${pair}” is not key:value.` } };
        labels[pair.slice(0, i).trim()] = pair.slice(i + 1).trim();
      }
      const body = { title: v.title.trim(), description: v.description, labels,
        max_retries: Number(v.max_retries || 0) };
      if (v.max_cost_usd !== '') body.max_cost_usd = Number(v.max_cost_usd);
      return api.post('/workflows', body);
    },
  });
  if (made) navigate(`/workflows/${made.id}`);
}
