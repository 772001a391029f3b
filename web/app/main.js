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
export const session = { config: null, user: null, account: null, me: null };
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

// Which account this person acts in: the one chosen before (kept per browser), else their only one. Null when
// they have none yet (the welcome page offers to create one or to accept an invitation).
async function resolveAccount() {
  api.setAccount(window.localStorage.getItem(ACCOUNT_KEY));
  try {
    session.account = await api.get('/account');
  } catch (err) {
    if (err.status === 404 || err.status === 403 || err.code === 'account_required') {
      window.localStorage.removeItem(ACCOUNT_KEY);
      api.setAccount(null);
      session.account = null;
      session.me = null;
      return null;
    }
    throw err;
  }
  session.me = session.account.me
    || JSON.parse(window.sessionStorage.getItem('qorch.devMe') || 'null'); // TEMPORARY(issue 12)
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
  const u = session.user;
  replace(who,
    session.config && session.config.auth_emulator ? h('span', { class: 'pill warn', title:
      'Signed in through the local Firebase Auth emulator' }, 'Auth emulator') : null,
    session.account ? h('span', { class: 'acct', title: session.account.id }, session.account.name) : null,
    u ? h('span', { class: 'email' }, u.email || u.uid) : null,
    u ? h('button', { class: 'btn small', type: 'button', onclick: async () => {
      await auth.signOut();
      window.localStorage.removeItem(ACCOUNT_KEY);
      navigate('/signin');
    } }, 'Sign out') : null);
}

async function render() {
  const seq = ++renderSeq;
  if (cleanup) { try { cleanup(); } catch { /* a page's cleanup must not block the next page */ } cleanup = null; }
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
  // TEMPORARY(issue 12): until the API accepts people's ID tokens, development runs pages with an API key put in
  // sessionStorage by hand or by the browser tests. Removed when issue 12 lands; it is not a way to sign in.
  const devKey = window.sessionStorage.getItem('qorch.devKey');
  api.configure({ apiBase: session.config.api_base, token: devKey ? async () => devKey : auth.idToken });
  session.user = await auth.init(session.config);
  if (devKey) session.user = { uid: 'dev', email: 'API key (development)' };
  if (!devKey) auth.onChange((u) => {
    const was = session.user;
    session.user = u;
    if (was && !u) { session.account = null; session.me = null; renderHeader(); navigate('/signin'); }
  });
  renderHeader();
  await render();
}

boot().catch((err) => replace(main, h('h1', {}, 'The dashboard could not start'), problemBox(err)));
