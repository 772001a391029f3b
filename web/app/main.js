// The dashboard's shell: configuration, sign-in state, the account in use, and a history router that loads each
// page's module only when it is first shown (the first page loads the shell, the sign-in page and Firebase).
import * as api from './api.js';
import * as auth from './auth.js';
import { h, replace, problemBox } from './ui.js';

const PAGES = [
  [/^\/signin$/, () => import('./pages/signin.js'), { public: true }],
  [/^\/welcome$/, () => import('./pages/welcome.js'), { noAccount: true }],
  [/^\/(?:workflows)?$/, () => import('./pages/workflows.js'), { section: 'workflows' }],
  [/^\/workflows\/(?<id>[A-Za-z0-9_-]+)$/, () => import('./pages/workflow.js'), { section: 'workflows' }],
  [/^\/account$/, () => import('./pages/account.js'), { section: 'account' }],
];

const ACCOUNT_KEY = 'qorch.account';
export const session = { config: null, user: null, person: null, account: null, me: null };
const main = document.getElementById('main');
let cleanup = null;
let renderSeq = 0;

export function navigate(path, { replace: swap = false } = {}) {
  if (swap) window.history.replaceState({}, '', path);
  else window.history.pushState({}, '', path);
  render();
}

// The person's roles in the account in use. OWNER may do everything; a VIEWER may only read.
export const roles = () => (session.me && session.me.roles) || [];
export const isOwner = () => roles().includes('OWNER');

// Which account this person acts in (GET /v1/me lists theirs, with their roles): the one chosen before in this
// browser, else the first. Null when they have none yet: the welcome page offers to create one or to accept an
// invitation. Every call then names the account in X-Qorch-Account.
async function resolveAccount() {
  api.setAccount(null);
  session.person = await api.get('/me');
  const mine = session.person.accounts;
  const chosen = window.localStorage.getItem(ACCOUNT_KEY);
  const membership = mine.find((a) => a.account_id === chosen) || mine[0];
  if (!membership) {
    session.account = null;
    session.me = null;
    return null;
  }
  api.setAccount(membership.account_id);
  session.me = membership;
  session.account = await api.get('/account');
  return session.account;
}

export async function useAccount(id) {
  window.localStorage.setItem(ACCOUNT_KEY, id);
  await resolveAccount();
  renderHeader();
}

export async function refreshAccount() {
  await resolveAccount();
  renderHeader();
  return session.account;
}

function renderHeader() {
  const nav = document.getElementById('nav');
  nav.hidden = !session.account;
  const who = document.getElementById('who');
  who.dataset.account = session.account ? session.account.id : '';
  const u = session.user;
  replace(who,
    session.config && session.config.auth_emulator ? h('span', { class: 'pill warn', title:
      'Signed in through the local Firebase Auth emulator' }, 'Auth emulator') : null,
    accountPicker(),
    u ? h('span', { class: 'email' }, u.email || u.uid) : null,
    u ? h('button', { class: 'btn small', type: 'button', onclick: async () => {
      await auth.signOut();
      window.localStorage.removeItem(ACCOUNT_KEY);
      navigate('/signin');
    } }, 'Sign out') : null);
}

// One account: its name. Several: a picker; the choice is kept in this browser.
function accountPicker() {
  if (!session.account) return null;
  const mine = (session.person && session.person.accounts) || [];
  if (mine.length < 2) return h('span', { class: 'acct', title: session.account.id }, session.account.name);
  const select = h('select', { id: 'account-picker', 'aria-label': 'Account', onchange: async () => {
    await useAccount(select.value);
    navigate('/');
  } }, mine.map((a) => h('option', { value: a.account_id, selected: a.account_id === session.account.id },
    a.account_name || a.account_id)));
  return select;
}

async function render() {
  const seq = ++renderSeq;
  if (cleanup) { try { cleanup(); } catch { /* a page's cleanup must not block the next page */ } cleanup = null; }
  renderHeader();
  const path = window.location.pathname.replace(/\/+$/, '') || '/';
  const match = PAGES.map(([re, load, opts]) => [path.match(re), load, opts]).find(([m]) => m);
  if (!match) {
    replace(main, h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '/', 'data-nav': '' }, 'Back to workflows')));
    return;
  }
  const [m, load, opts] = match;
  const next = path + window.location.search;
  if (!opts.public && !session.user) return navigate(`/signin?next=${encodeURIComponent(next)}`, { replace: true });
  if (!opts.public && !opts.noAccount && !session.account) {
    try {
      if (!(await resolveAccount())) return navigate('/welcome', { replace: true });
    } catch (err) {
      replace(main, h('h1', {}, 'The dashboard cannot load your account'), problemBox(err));
      return;
    }
    renderHeader();
  }
  document.querySelectorAll('#nav a').forEach((a) => {
    if (a.dataset.section === opts.section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  });
  const mod = await load();
  if (seq !== renderSeq) return; // the person navigated again while the module loaded
  const params = (m.groups) || {};
  const query = Object.fromEntries(new URLSearchParams(window.location.search));
  replace(main);
  try {
    cleanup = (await mod.default(main, { params, query, session, navigate })) || null;
  } catch (err) {
    replace(main, h('h1', {}, 'This page could not load'), problemBox(err));
  }
  if (seq === renderSeq) {
    const heading = main.querySelector('h1');
    document.title = heading ? `${heading.textContent} · qorch` : 'qorch';
  }
}

// Same-origin links navigate without reloading the page (modifier clicks still open a new tab).
document.addEventListener('click', (e) => {
  const a = e.target.closest('a[href]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  if (a.target || a.hasAttribute('download') || a.origin !== window.location.origin) return;
  if (a.pathname.startsWith('/v1/') || a.pathname.startsWith('/vendor/')) return;
  e.preventDefault();
  navigate(a.pathname + a.search);
});
window.addEventListener('popstate', () => render());

async function boot() {
  session.config = await (await fetch('/config.json')).json();
  api.configure({ apiBase: session.config.api_base, token: auth.idToken });
  session.user = await auth.init(session.config);
  auth.onChange((u) => {
    const was = session.user;
    session.user = u;
    if (was && !u) { session.account = null; session.me = null; renderHeader(); navigate('/signin'); }
  });
  renderHeader();
  await render();
}

boot().catch((err) => replace(main, h('h1', {}, 'The dashboard could not start'), problemBox(err)));
