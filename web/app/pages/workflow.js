// One workflow: its state diagram, timeline, hand-offs, artifacts, usage and budget, and the actions this person
// may take. It follows the workflow live: the workflow itself is polled (one read), and only when its version moved
// are the new events fetched, from the cursor of the last page read, never the whole page again.
import * as api from '../api.js';
import { diagram } from '../diagram.js';
import { isOwner, roles } from '../main.js';
import {
  ago, bytes, confirmDialog, countdown, emptyState, h, money, num, pretty, problemBox, progress, replace,
  stateBadge, toast, when,
} from '../ui.js';
import { cost, holder } from './workflows.js';

const POLL_MS = Number(window.sessionStorage.getItem('qorch.pollMs')) || 3000;
const PREVIEW_LIMIT = 512 * 1024;
let machineCache = null;

const machine = async () => (machineCache ||= await api.get('/state-machine'));

export default async function workflowPage(root, { params }) {
  const id = params.id;
  const path = `/workflows/${id}`;
  const [sm, first] = await Promise.all([machine(), api.get(path), loadKeyNames()]);
  const kinds = new Map(sm.transitions.map((t) => [`${t.from}>${t.to}`, t]));
  const state = { wf: first, events: [], cursor: null, handoffs: [], artifacts: [], onlyTrouble: false,
    allHandoffs: false };
  let stopped = false;
  let timer = null;
  let ticker = null;

  const headerSlot = h('div');
  const actionsSlot = h('section', { class: 'actions', 'aria-label': 'Actions' });
  const diagramSlot = h('div', { class: 'diagram-wrap' });
  const timelineSlot = h('ol', { class: 'timeline', 'aria-live': 'polite' });
  const handoffSlot = h('div');
  const artifactSlot = h('div');
  const usageSlot = h('div');
  const previewSlot = h('div');
  const liveDot = h('span', { class: 'live', title: 'Updates while this page is open' }, 'Live');

  const filterBox = h('input', { id: 'only-trouble', type: 'checkbox', onchange: (e) => {
    state.onlyTrouble = e.target.checked;
    renderTimeline();
  } });

  replace(root,
    h('p', { class: 'crumbs' }, h('a', { href: '/' }, '← Workflows')),
    headerSlot,
    actionsSlot,
    h('div', { class: 'wf-grid' },
      h('section', { class: 'card', 'aria-labelledby': 'h-diagram' },
        h('div', { class: 'row between' }, h('h2', { id: 'h-diagram' }, 'State'), liveDot),
        diagramSlot,
        h('ul', { class: 'legend small' }, ['forward', 'rework', 'fail', 'rollback'].map((k) =>
          h('li', { class: k }, { forward: 'Path taken', rework: 'Rework', fail: 'Failure', rollback: 'Rollback' }[k])))),
      h('section', { class: 'card', 'aria-labelledby': 'h-timeline' },
        h('div', { class: 'row between wrap' }, h('h2', { id: 'h-timeline' }, 'Timeline'),
          h('label', { class: 'check small', for: 'only-trouble' }, filterBox, ' Only rework, failures and rollbacks')),
        timelineSlot)),
    h('div', { class: 'wf-grid' },
      h('section', { class: 'card', 'aria-labelledby': 'h-handoffs' }, h('h2', { id: 'h-handoffs' }, 'Hand-offs'),
        handoffSlot),
      h('section', { class: 'card', 'aria-labelledby': 'h-usage' }, h('h2', { id: 'h-usage' }, 'Usage and budget'),
        usageSlot)),
    h('section', { class: 'card', 'aria-labelledby': 'h-artifacts' }, h('h2', { id: 'h-artifacts' }, 'Artifacts'),
      artifactSlot, previewSlot));

  // ---- loading -------------------------------------------------------------------------------------------------

  async function newEvents() {
    // The events listing is oldest first. `cursor` is the token of the page holding the newest event seen: asking
    // with it again returns what came after that page's start, so only the new tail is appended.
    for (;;) {
      const page = await api.get(`${path}/events`, { limit: 100, page_token: state.cursor });
      const last = state.events.length ? state.events[state.events.length - 1].seq : 0;
      state.events.push(...page.events.filter((e) => e.seq > last));
      if (!page.next_page_token) break;
      state.cursor = page.next_page_token;
    }
  }

  async function sideLists() {
    const [handoffs, artifacts] = await Promise.all([
      api.get(`${path}/handoffs`, { limit: 20 }), api.get(`${path}/artifacts`, { limit: 100 })]);
    state.handoffs = handoffs.handoffs;
    state.artifacts = artifacts.artifacts;
  }

  async function refresh(wf) {
    state.wf = wf;
    await Promise.all([newEvents(), sideLists()]);
    renderAll();
  }

  async function poll() {
    if (stopped) return;
    try {
      if (document.visibilityState === 'visible') {
        const wf = await api.get(path);
        const moved = wf.version !== state.wf.version;
        const leaseMoved = JSON.stringify(wf.current_handoff) !== JSON.stringify(state.wf.current_handoff);
        if (moved) await refresh(wf);
        else if (leaseMoved) { state.wf = wf; await sideLists(); renderAll(); }
        liveDot.classList.remove('stale');
      }
    } catch {
      liveDot.classList.add('stale'); // shown as "reconnecting"; the next poll tries again
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }

  // ---- rendering -----------------------------------------------------------------------------------------------

  const artifactName = (aid) => (state.artifacts.find((a) => a.id === aid) || {}).name || aid;
  const kindOf = (e) => (e.type === 'ROLLED_BACK' ? 'rollback' : e.type === 'CREATED' ? 'created'
    : (kinds.get(`${e.from_state}>${e.to_state}`) || {}).kind || 'forward');

  function renderAll() {
    renderHeader();
    renderActions();
    replace(diagramSlot, diagram(sm, state.wf, state.events));
    renderTimeline();
    renderHandoffs();
    renderArtifacts();
    renderUsage();
  }

  function renderHeader() {
    const wf = state.wf;
    replace(headerSlot,
      h('div', { class: 'row between wrap' },
        h('h1', {}, wf.title),
        h('div', { class: 'row' }, stateBadge(wf.state), progress(wf.state))),
      h('p', { class: 'meta muted small' },
        `Version ${wf.version} · retries ${wf.retry_count} of ${wf.max_retries} · cost ${cost(wf)} · `,
        wf.current_handoff && wf.current_handoff.status === 'CLAIMED' ? ['held by ', holder(wf)] : holder(wf),
        ` · created ${when(wf.created_at)} · updated `,
        h('time', { datetime: wf.updated_at, title: when(wf.updated_at) }, ago(wf.updated_at))),
      Object.keys(wf.labels || {}).length
        ? h('p', {}, Object.entries(wf.labels).map(([k, v]) => h('span', { class: 'label' }, `${k}:${v}`))) : null,
      wf.description ? h('details', { class: 'desc' }, h('summary', {}, 'Description'),
        h('p', { class: 'pre' }, wf.description)) : null);
  }

  function renderActions() {
    const wf = state.wf;
    const allowed = wf.allowed_transitions || [];
    const buttons = [];
    if (wf.state === 'REVIEW') {
      const approve = allowed.find((t) => t.kind === 'forward');
      if (approve) {
        buttons.push(h('button', { class: 'btn primary', type: 'button', 'data-action': 'approve',
          onclick: () => transition(approve.to, {
            title: 'Approve this work?', confirm: `Approve and move to ${pretty(approve.to)}`,
            body: h('p', {}, `The workflow goes on to ${pretty(approve.to)}.`), noteLabel: 'Note (optional)',
          }) }, 'Approve'));
      }
      const rework = allowed.filter((t) => t.kind === 'rework');
      if (rework.length) {
        buttons.push(h('button', { class: 'btn', type: 'button', 'data-action': 'send-back',
          onclick: () => sendBack(rework) }, 'Send back…'));
      }
    }
    const cancel = allowed.find((t) => t.kind === 'cancel');
    if (cancel) {
      buttons.push(h('button', { class: 'btn danger', type: 'button', 'data-action': 'cancel',
        onclick: () => transition(cancel.to, {
          title: 'Cancel this workflow?', confirm: 'Cancel workflow', danger: true,
          body: h('p', {}, 'CANCELLED is final: the workflow cannot be resumed or rolled back.'),
          noteLabel: 'Why (recorded in the timeline)', required: true,
        }) }, 'Cancel workflow'));
    }
    if (isOwner() && wf.budget && !wf.final) {  // a final workflow spends nothing more
      buttons.push(h('button', { class: 'btn', type: 'button', 'data-action': 'budget', onclick: raiseBudget },
        wf.budget.max_cost_usd === null ? 'Set a budget…' : 'Raise budget…'));
    }
    replace(actionsSlot, buttons.length ? h('div', { class: 'row wrap' }, buttons,
      canRollBack() ? h('span', { class: 'muted small' }, 'To roll back, pick a version in the timeline.') : null)
      : null);
  }

  const canRollBack = () => isOwner() && !state.wf.final;

  function renderTimeline() {
    const wf = state.wf;
    const shown = state.events.slice().reverse()
      .filter((e) => !state.onlyTrouble || ['rework', 'fail', 'rollback'].includes(kindOf(e)));
    if (!shown.length) {
      replace(timelineSlot, h('li', { class: 'muted' }, 'No rework, failures or rollbacks.'));
      return;
    }
    const label = { created: 'Created', forward: 'Forward', rework: 'Rework', fail: 'Failure', cancel: 'Cancelled',
      rollback: 'Rollback' };
    replace(timelineSlot, shown.map((e) => {
      const kind = kindOf(e);
      const active = (sm.states.find((st) => st.name === e.to_state) || {}).kind === 'active';
      return h('li', { class: `ev ${kind}`, 'data-seq': e.seq, 'data-kind': kind },
        h('div', { class: 'ev-head' },
          h('span', { class: `tag ${kind}` }, label[kind]),
          h('strong', {}, e.from_state ? `${pretty(e.from_state)} → ${pretty(e.to_state)}` : pretty(e.to_state)),
          h('span', { class: 'muted small' }, ` v${e.seq}`)),
        h('div', { class: 'muted small' }, actorName(e.actor, e.actor_email), ' · ',
          h('time', { datetime: e.at, title: when(e.at) }, `${when(e.at)} (${ago(e.at)})`)),
        e.reason ? h('p', { class: 'reason' }, h('span', { class: 'muted' }, 'Reason: '), e.reason) : null,
        e.note ? h('p', { class: 'pre note' }, e.note) : null,
        e.artifacts && e.artifacts.length ? h('p', { class: 'small' }, 'Artifacts: ',
          e.artifacts.map((aid) => h('button', { class: 'link', type: 'button', onclick: () => preview(aid) },
            artifactName(aid)))) : null,
        e.usage ? h('p', { class: 'small muted' }, usageLine(e.usage)) : null,
        canRollBack() && active && e.seq < wf.version
          ? h('button', { class: 'btn small', type: 'button', 'data-action': 'rollback',
            onclick: () => rollback(e) }, `Roll back to v${e.seq}`) : null);
    }));
  }

  function renderHandoffs() {
    if (!state.handoffs.length) return replace(handoffSlot, emptyState('No hand-offs yet.'));
    const shown = state.allHandoffs ? state.handoffs : state.handoffs.slice(0, 4);
    const more = state.handoffs.length - shown.length;
    return replace(handoffSlot, h('ul', { class: 'plain' }, shown.map((ho) => h('li', { class: 'handoff' },
      h('div', { class: 'row between wrap' },
        h('strong', {}, `${ho.from_role ? pretty(ho.from_role) : ho.seq === 1 ? 'Start' : 'Rollback'} → ${pretty(ho.to_role)}`),
        h('span', { class: `badge ho-${ho.status.toLowerCase()}` }, pretty(ho.status))),
      h('div', { class: 'small muted' }, `${pretty(ho.to_state)} · opened ${ago(ho.created_at)}`,
        ho.attempts > 1 ? ` · claimed ${ho.attempts} times` : ''),
      ho.status === 'CLAIMED' ? h('div', { class: 'small' }, 'Held by ', h('strong', {}, ho.agent_id || ho.claimed_by),
        ' · ', h('span', { class: 'lease', 'data-expires': ho.lease_expires_at }, countdown(ho.lease_expires_at))) : null,
      ho.note ? h('p', { class: 'pre note small' }, ho.note) : null,
      ho.artifacts.length ? h('p', { class: 'small' }, 'Handed over: ', ho.artifacts.map((aid) =>
        h('button', { class: 'link', type: 'button', onclick: () => preview(aid) }, artifactName(aid)))) : null))),
    more > 0 ? h('button', { class: 'btn small', type: 'button', onclick: () => { state.allHandoffs = true; renderHandoffs(); } },
      `Show ${more} earlier`) : null);
  }

  function renderArtifacts() {
    const ready = state.artifacts.filter((a) => a.status === 'AVAILABLE');
    if (!ready.length) return replace(artifactSlot, emptyState('No artifacts yet.'));
    return replace(artifactSlot, h('table', { class: 'art-table' },
      h('thead', {}, h('tr', {}, ['Name', 'Size', 'By', 'When', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, ready.map((a) => h('tr', {},
        h('td', { 'data-label': 'Name' }, a.name, h('div', { class: 'muted small' }, a.content_type)),
        h('td', { 'data-label': 'Size' }, bytes(a.size_bytes)),
        h('td', { 'data-label': 'By' }, actorName(a.created_by, a.created_by_email)),
        h('td', { 'data-label': 'When' }, ago(a.created_at)),
        h('td', { class: 'row end' },
          previewable(a) ? h('button', { class: 'btn small', type: 'button', onclick: () => preview(a.id),
            'aria-label': `Preview ${a.name}` }, 'Preview') : null,
          h('button', { class: 'btn small', type: 'button', onclick: () => download(a.id),
            'aria-label': `Download ${a.name}` }, 'Download')))))));
  }

  function renderUsage() {
    const wf = state.wf;
    const u = wf.usage;
    const b = wf.budget;
    if (!u && !b) return replace(usageSlot, emptyState('No usage reported for this workflow yet.'));
    const parts = [];
    if (b) {
      const pct = b.max_cost_usd ? Math.min(100, (100 * b.spent_usd) / b.max_cost_usd) : 0;
      parts.push(h('div', { class: `budget ${b.exhausted ? 'exhausted' : ''}` },
        h('div', { class: 'row between' }, h('strong', {}, `${money(b.spent_usd)} spent`),
          h('span', {}, b.max_cost_usd === null ? 'no budget set' : `of ${money(b.max_cost_usd)}`)),
        b.max_cost_usd !== null ? h('div', { class: 'meter', role: 'meter', 'aria-valuemin': 0,
          'aria-valuemax': b.max_cost_usd, 'aria-valuenow': b.spent_usd, 'aria-label': 'Budget spent' },
        h('span', { dataset: { pct: Math.round(pct) } })) : null,
        b.exhausted ? h('p', { class: 'problem small', role: 'note' },
          'Budget exhausted: agents cannot move this workflow until the budget is raised.') : null));
    }
    if (u) {
      parts.push(h('dl', { class: 'kv' },
        h('dt', {}, 'Input tokens'), h('dd', {}, num(u.input_tokens)),
        h('dt', {}, 'Output tokens'), h('dd', {}, num(u.output_tokens)),
        h('dt', {}, 'Cache reads'), h('dd', {}, num(u.cache_read_tokens)),
        h('dt', {}, 'Cost'), h('dd', {}, money(u.cost_usd)),
        u.unpriced_calls ? [h('dt', {}, 'Unpriced calls'), h('dd', {}, num(u.unpriced_calls))] : null));
      const byRole = Object.entries(u.by_role || {});
      if (byRole.length) {
        parts.push(h('table', { class: 'small' }, h('thead', {}, h('tr', {},
          ['Role', 'Tokens in', 'Tokens out', 'Cost'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, byRole.map(([role, r]) => h('tr', {}, h('td', {}, pretty(role)),
          h('td', {}, num(r.input_tokens)), h('td', {}, num(r.output_tokens)), h('td', {}, money(r.cost_usd)))))));
      }
    }
    replace(usageSlot, parts);
    // The meter's width is set through the CSSOM (a style attribute would be refused by the page's CSP).
    usageSlot.querySelectorAll('.meter span').forEach((el) => { el.style.width = `${el.dataset.pct}%`; });
    return undefined;
  }

  // ---- actions -------------------------------------------------------------------------------------------------

  async function transition(to, { title, confirm, body, noteLabel, danger = false, required = false, note }) {
    const expected = state.wf.version;
    const done = await confirmDialog({
      title, body, confirm, danger,
      fields: note === false ? [] : [{ name: 'note', label: noteLabel, type: 'textarea', required }],
      run: (v) => api.post(`${path}/transitions`, { to, note: v.note || '', expected_version: expected }),
    });
    if (done) { toast(`Moved to ${pretty(to)}`); await refresh(done.workflow); }
  }

  async function sendBack(rework) {
    const expected = state.wf.version;
    const done = await confirmDialog({
      title: 'Send back for changes?',
      body: h('p', {}, 'Say what must change: the note goes with the work to the next role.'),
      confirm: 'Send back',
      fields: [
        { name: 'to', label: 'Back to', type: 'select',
          options: rework.map((t) => [t.to, `${pretty(t.to)} (${(kinds.get(`${state.wf.state}>${t.to}`) || {}).description || 'rework'})`]) },
        { name: 'note', label: 'What must change', type: 'textarea', required: true },
      ],
      run: (v) => api.post(`${path}/transitions`, { to: v.to, note: v.note, expected_version: expected }),
    });
    if (done) { toast(`Sent back to ${pretty(done.workflow.state)}`); await refresh(done.workflow); }
  }

  async function rollback(event) {
    const done = await confirmDialog({
      title: `Roll back to version ${event.seq}?`,
      body: h('p', {}, `The workflow returns to ${pretty(event.to_state)}, as it was after version ${event.seq}. `,
        'The timeline keeps everything that happened; a new hand-off goes to ', pretty(roleOf(event.to_state)), '.'),
      confirm: 'Roll back', danger: true,
      fields: [
        { name: 'reason', label: 'Reason (recorded in the timeline)', type: 'textarea', required: true },
        { name: 'reset_retries', label: 'Also reset the retry count to 0', type: 'checkbox' },
      ],
      run: (v) => api.post(`${path}/rollback`, { to_version: event.seq, reason: v.reason,
        reset_retries: v.reset_retries }),
    });
    if (done) { toast(`Rolled back to ${pretty(done.workflow.state)}`); await refresh(done.workflow); }
  }

  async function raiseBudget() {
    const b = state.wf.budget;
    const done = await confirmDialog({
      title: b.max_cost_usd === null ? 'Set a budget' : 'Raise the budget',
      body: h('p', {}, `Spent so far: ${money(b.spent_usd)}.`),
      confirm: 'Save budget',
      fields: [{ name: 'max', label: 'Budget (USD)', type: 'number', min: 0, step: '0.01', required: true,
        value: b.max_cost_usd ?? '' }],
      run: (v) => api.patch(path, { max_cost_usd: Number(v.max) }),
    });
    if (done) { toast('Budget saved'); await refresh(done.workflow || done); }
  }

  const roleOf = (st) => (sm.states.find((x) => x.name === st) || {}).role || '';

  // ---- artifacts -----------------------------------------------------------------------------------------------

  const previewable = (a) => /^(text\/|application\/(json|x-ndjson|xml|x-yaml|yaml))/.test(a.content_type)
    || /\.(md|txt|json|ya?ml|log|diff|patch|csv)$/i.test(a.name);

  async function download(aid) {
    try {
      const r = await api.get(`${path}/artifacts/${aid}`);
      if (!r.download) throw { problem: { title: 'Not available', detail: 'The upload of this artifact is not complete.' } };
      window.location.assign(r.download.url);
    } catch (err) {
      replace(previewSlot, problemBox(err));
    }
  }

  async function preview(aid) {
    replace(previewSlot, h('p', { class: 'muted', role: 'status' }, 'Loading preview…'));
    try {
      const r = await api.get(`${path}/artifacts/${aid}`);
      const a = r.artifact;
      if (!r.download) throw { problem: { title: 'Not available', detail: 'The upload of this artifact is not complete.' } };
      if (!previewable(a)) {
        replace(previewSlot, h('p', {}, `${a.name} (${a.content_type}) has no preview. `,
          h('a', { href: r.download.url, download: a.name }, 'Download it')));
        return;
      }
      if (a.size_bytes > PREVIEW_LIMIT) {
        replace(previewSlot, h('p', {}, `${a.name} is ${bytes(a.size_bytes)}, too large to preview. `,
          h('a', { href: r.download.url, download: a.name }, 'Download it')));
        return;
      }
      const res = await fetch(r.download.url);
      if (!res.ok) throw { problem: { title: 'The download failed', detail: `HTTP ${res.status} from the store.` } };
      const text = await res.text();
      const markdown = /markdown/.test(a.content_type) || /\.md$/i.test(a.name);
      const body = markdown ? (await import('../markdown.js')).renderMarkdown(text) : h('pre', { class: 'text' }, text);
      replace(previewSlot, h('article', { class: 'preview', 'aria-label': `Preview of ${a.name}` },
        h('div', { class: 'row between' }, h('h3', {}, a.name),
          h('div', { class: 'row' }, h('a', { class: 'btn small', href: r.download.url, download: a.name }, 'Download'),
            h('button', { class: 'btn small', type: 'button', onclick: () => replace(previewSlot) }, 'Close'))),
        body));
      previewSlot.scrollIntoView({ block: 'nearest' });
    } catch (err) {
      replace(previewSlot, problemBox(err));
    }
  }

  // ---- start ---------------------------------------------------------------------------------------------------

  await Promise.all([newEvents(), sideLists()]);
  renderAll();
  timer = setTimeout(poll, POLL_MS);
  ticker = setInterval(() => {
    root.querySelectorAll('.lease[data-expires]').forEach((el) => { el.textContent = countdown(el.dataset.expires); });
  }, 1000);
  return () => { stopped = true; clearTimeout(timer); clearInterval(ticker); };
}

// Who did it, in words: a person by their email, a key by its name (when this person may list keys), qorch itself.
let keyNames = new Map();

export function actorName(actor, email) {
  if (!actor) return 'someone';
  if (actor.startsWith('user:')) return email || actor.slice(5);
  if (actor.startsWith('system:')) return 'qorch';
  const name = keyNames.get(actor);
  return name ? `${name} (API key)` : actor;
}

async function loadKeyNames() {
  if (!roles().some((r) => r === 'OWNER' || r === 'VIEWER')) return; // others may not list keys
  try {
    keyNames = new Map((await api.get('/keys')).keys.map((k) => [k.id, k.name || k.prefix]));
  } catch {
    keyNames = new Map(); // the ids are shown instead
  }
}

function usageLine(usage) {
  const list = Array.isArray(usage) ? usage : [usage];
  return list.map((x) => `${x.model}: ${num(x.input_tokens)} in, ${num(x.output_tokens)} out`
    + (x.cost_usd !== null && x.cost_usd !== undefined ? `, ${money(x.cost_usd)}` : '')).join('; ');
}
