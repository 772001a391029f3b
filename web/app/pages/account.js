// The account: plan, entitlement and why, usage against the plan's limits, Stripe Checkout and the billing portal,
// members and invitations, and API keys (a new key's secret is shown once).
import * as api from '../api.js';
import { isOwner, refreshAccount, roles } from '../main.js';
import {
  act, ago, confirmDialog, emptyState, h, money, num, pretty, problemBox, replace, toast, when,
} from '../ui.js';

const SOLD_PLANS = [['starter', 'Starter'], ['pro', 'Pro']];
const MEMBER_ROLES = ['OWNER', 'VIEWER', 'Q_ASSISTANT', 'ARCHITECT', 'DEVELOPER', 'TESTER', 'VERIFIER', 'DEVOPS'];
const KEY_ROLES = MEMBER_ROLES.filter((r) => r !== 'VIEWER');

export default async function account(root) {
  const acct = await refreshAccount();
  const owner = isOwner();
  const billingSlot = h('div');
  const membersSlot = h('div');
  const keysSlot = h('div');

  replace(root,
    h('h1', {}, acct.name),
    h('p', { class: 'muted small' }, `Account ${acct.id}`),
    h('div', { class: 'wf-grid' },
      h('section', { class: 'card', 'aria-labelledby': 'h-plan' }, h('h2', { id: 'h-plan' }, 'Plan and billing'),
        planView(acct), billingSlot),
      h('section', { class: 'card', 'aria-labelledby': 'h-usage' }, h('h2', { id: 'h-usage' }, 'Usage'),
        usageView(acct))),
    h('section', { class: 'card', 'aria-labelledby': 'h-members' }, h('h2', { id: 'h-members' }, 'Members'),
      membersSlot),
    h('section', { class: 'card', 'aria-labelledby': 'h-keys' }, h('h2', { id: 'h-keys' }, 'API keys'),
      h('p', { class: 'muted small' }, 'Keys are for programs: your agents, CI, scripts. People sign in instead.'),
      keysSlot));

  if (owner) billing(acct, billingSlot);
  if (owner || roles().includes('VIEWER')) {
    await Promise.all([members(membersSlot, owner), keys(keysSlot, owner)]);
  } else { // agent roles may not list members or keys: say so rather than show a refusal
    const note = () => h('p', { class: 'muted small' }, 'Only owners (and viewers, to read) see this.');
    replace(membersSlot, note());
    replace(keysSlot, note());
  }
}

function planView(acct) {
  const e = acct.entitlement;
  return h('div', { class: 'stack' },
    h('dl', { class: 'kv' },
      h('dt', {}, 'Plan'), h('dd', {}, h('strong', {}, pretty(acct.plan))),
      h('dt', {}, 'Status'), h('dd', {},
        h('span', { class: `badge ${e.entitled ? 'ok' : 'bad'}` }, e.entitled ? 'Entitled' : 'Not entitled'),
        ' ', h('span', { class: 'muted small' }, e.status)),
      h('dt', {}, 'Why'), h('dd', {}, e.reason),
      e.grace_until ? [h('dt', {}, 'Grace until'), h('dd', {}, when(e.grace_until))] : null,
      e.current_period_end ? [h('dt', {}, e.cancel_at_period_end ? 'Ends on' : 'Renews on'),
        h('dd', {}, when(e.current_period_end))] : null));
}

function usageView(acct) {
  const lim = acct.limits || {};
  const active = acct.usage.active_workflows;
  const month = acct.usage.this_month;
  const meter = (value, max, label) => {
    const m = h('div', { class: 'meter', role: 'meter', 'aria-label': label, 'aria-valuemin': 0,
      'aria-valuemax': max, 'aria-valuenow': value }, h('span'));
    m.firstChild.style.width = `${Math.min(100, (100 * value) / max)}%`;
    return m;
  };
  return h('div', { class: 'stack' },
    h('div', {}, h('div', { class: 'row between' }, h('span', {}, 'Active workflows'),
      h('strong', {}, lim.max_active_workflows ? `${active} of ${lim.max_active_workflows}` : String(active))),
    lim.max_active_workflows ? meter(active, lim.max_active_workflows, 'Active workflows against the plan') : null),
    lim.max_artifact_bytes ? h('p', { class: 'small muted' },
      `Largest artifact ${Math.round(lim.max_artifact_bytes / 1024 / 1024)} MB · finished workflows kept `
      + `${lim.retention_days} days · idle workflows cancelled after ${lim.stale_after_days} days`) : null,
    month ? h('dl', { class: 'kv' },
      h('dt', {}, 'AI cost this month'), h('dd', {}, h('strong', {}, money(month.cost_usd))),
      h('dt', {}, 'Tokens in / out'), h('dd', {}, `${num(month.input_tokens)} / ${num(month.output_tokens)}`),
      h('dt', {}, 'Cache reads'), h('dd', {}, num(month.cache_read_tokens)),
      month.unpriced_calls ? [h('dt', {}, 'Unpriced calls'), h('dd', {}, num(month.unpriced_calls))] : null)
      : h('p', { class: 'muted small' }, 'No AI usage reported this month.'));
}

function billing(acct, slot) {
  const e = acct.entitlement;
  const subscribed = Boolean(e.subscription_id);
  const status = h('div');
  const go = (btn, request) => act(btn, status, async () => window.location.assign((await request()).url));
  const buttons = [];
  if (!subscribed || ['canceled', 'incomplete_expired'].includes(e.status)) {
    for (const [plan, label] of SOLD_PLANS) {
      const btn = h('button', { class: 'btn primary', type: 'button', 'data-action': `checkout-${plan}`,
        onclick: () => go(btn, () => api.post('/billing/checkout-session', { plan })) }, `Subscribe to ${label}`);
      buttons.push(btn);
    }
  }
  if (subscribed) {
    const btn = h('button', { class: 'btn', type: 'button', 'data-action': 'portal',
      onclick: () => go(btn, () => api.post('/billing/portal-session')) }, 'Manage billing');
    buttons.push(btn);
  }
  replace(slot, h('div', { class: 'row wrap' }, buttons), h('p', { class: 'small muted' },
    'Payments happen on Stripe; no card details reach qorch.'), status);
}

async function members(slot, owner) {
  let list;
  try {
    list = await api.get('/members');
  } catch (err) {
    replace(slot, problemBox(err));
    return;
  }
  const reload = () => members(slot, owner);
  const remove = (who, id, invited) => async () => {
    const done = await confirmDialog({
      title: invited ? `Withdraw the invitation of ${who}?` : `Remove ${who}?`,
      confirm: invited ? 'Withdraw' : 'Remove', danger: true,
      body: h('p', {}, invited ? 'The invitation can no longer be accepted.'
        : 'They lose access at once. Their past actions stay in the timelines.'),
      run: () => api.del(`/members/${id}`),
    });
    if (done) { toast(invited ? 'Invitation withdrawn' : 'Member removed'); reload(); }
  };
  const rows = [
    ...list.members.map((m) => h('tr', { 'data-member': m.email },
      h('td', { 'data-label': 'Person' }, m.email),
      h('td', { 'data-label': 'Roles' }, m.roles.map(pretty).join(', ')),
      h('td', { 'data-label': 'Since' }, ago(m.joined_at)),
      owner ? h('td', { class: 'row end' },
        h('button', { class: 'btn small', type: 'button', 'aria-label': `Change roles of ${m.email}`,
          onclick: async () => {
            const done = await confirmDialog({
              title: `Roles of ${m.email}`, confirm: 'Save roles',
              fields: rolesFields(MEMBER_ROLES, m.roles),
              run: (v) => api.patch(`/members/${m.id}`, { roles: chosen(v) }),
            });
            if (done) { toast('Roles saved'); reload(); }
          } }, 'Roles…'),
        h('button', { class: 'btn small danger', type: 'button', 'aria-label': `Remove ${m.email}`,
          onclick: remove(m.email, m.id, false) }, 'Remove')) : null)),
    ...list.invitations.map((inv) => h('tr', { 'data-invitation': inv.email },
      h('td', { 'data-label': 'Person' }, inv.email, ' ', h('span', { class: 'badge ho-pending' }, 'Invited')),
      h('td', { 'data-label': 'Roles' }, inv.roles.map(pretty).join(', ')),
      h('td', { 'data-label': 'Since' }, `invited ${ago(inv.created_at)}`),
      owner ? h('td', { class: 'row end' }, h('button', { class: 'btn small danger', type: 'button',
        'aria-label': `Withdraw the invitation of ${inv.email}`, onclick: remove(inv.email, inv.id, true) },
      'Withdraw')) : null)),
  ];
  replace(slot,
    h('table', { class: 'art-table' }, h('thead', {}, h('tr', {}, ['Person', 'Roles', 'Since', owner ? '' : null]
      .filter((x) => x !== null).map((t) => h('th', { scope: 'col' }, t)))), h('tbody', {}, rows)),
    owner ? h('button', { class: 'btn', type: 'button', 'data-action': 'invite', onclick: async () => {
      const done = await confirmDialog({
        title: 'Invite a person', confirm: 'Send invitation',
        body: h('p', { class: 'muted' }, 'They join when they sign in with this email address (verified) and accept.'),
        fields: [{ name: 'email', label: 'Email address', type: 'email', required: true },
          ...rolesFields(MEMBER_ROLES, ['VIEWER'])],
        run: (v) => api.post('/members', { email: v.email.trim(), roles: chosen(v) }),
      });
      if (done) { toast('Invitation created'); reload(); }
    } }, 'Invite a person…') : null);
}

async function keys(slot, owner) {
  let list;
  try {
    list = (await api.get('/keys')).keys;
  } catch (err) {
    replace(slot, problemBox(err));
    return;
  }
  const reload = () => keys(slot, owner);
  replace(slot,
    list.length ? h('table', { class: 'art-table' }, h('thead', {}, h('tr', {}, ['Name', 'Roles', 'Key', 'Created', 'Last used', '']
      .map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, list.map((k) => h('tr', { 'data-key': k.id },
      h('td', { 'data-label': 'Name' }, k.name || '—', k.revoked ? [' ', h('span', { class: 'badge bad' }, 'Revoked')] : null),
      h('td', { 'data-label': 'Roles' }, k.roles.map(pretty).join(', ')),
      h('td', { 'data-label': 'Key' }, h('code', {}, `${k.prefix}…`)),
      h('td', { 'data-label': 'Created' }, ago(k.created_at)),
      h('td', { 'data-label': 'Last used' }, k.last_used_at ? ago(k.last_used_at) : 'never'),
      h('td', { class: 'row end' }, owner && !k.revoked ? h('button', { class: 'btn small danger', type: 'button',
        'aria-label': `Revoke ${k.name || k.prefix}`, onclick: async () => {
          const done = await confirmDialog({
            title: `Revoke “${k.name || k.prefix}”?`, confirm: 'Revoke', danger: true,
            body: h('p', {}, 'Programs using this key are refused from their next call.'),
            run: () => api.del(`/keys/${k.id}`),
          });
          if (done) { toast('Key revoked'); reload(); }
        } }, 'Revoke') : null)))))
      : emptyState('No API keys.'),
    owner ? h('button', { class: 'btn', type: 'button', 'data-action': 'new-key', onclick: async () => {
      const made = await confirmDialog({
        title: 'New API key', confirm: 'Create key',
        fields: [{ name: 'name', label: 'Name', required: true, placeholder: 'ci-agents' },
          ...rolesFields(KEY_ROLES, ['DEVELOPER'])],
        run: (v) => api.post('/keys', { name: v.name.trim(), roles: chosen(v) }),
      });
      if (made) { await showSecret(made); reload(); }
    } }, 'New API key…') : null);
}

// The secret exists only in this answer: show it once, with a copy button, and say so.
async function showSecret(made) {
  const secret = made.api_key;
  const field = h('input', { id: 'new-secret', readonly: true, value: secret, class: 'mono' });
  await confirmDialog({
    title: 'Copy your new key now',
    body: h('div', { class: 'stack' },
      h('p', {}, 'This is the only time the key is shown. Store it in your secret manager.'),
      h('div', { class: 'field' }, h('label', { for: 'new-secret' }, 'API key'), field),
      h('button', { class: 'btn small', type: 'button', onclick: async () => {
        field.select();
        try { await navigator.clipboard.writeText(secret); toast('Copied'); } catch { /* selected for manual copy */ }
      } }, 'Copy')),
    confirm: 'I have stored it',
  });
}

function rolesFields(all, checked) {
  return all.map((r) => ({ name: `role_${r}`, label: pretty(r), type: 'checkbox', value: checked.includes(r) }));
}

function chosen(values) {
  return Object.entries(values).filter(([k, v]) => k.startsWith('role_') && v).map(([k]) => k.slice(5));
}
