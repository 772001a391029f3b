// Sign-in: Google (a popup) or a sign-in link sent by email. Arriving from such a link finishes the sign-in here.
import * as auth from '../auth.js';
import { confirmDialog, h, problemBox, replace } from '../ui.js';

// Only the dashboard's own paths: a crafted ?next= must not send a person elsewhere after signing in.
function safeNext(next) {
  return next && /^\/(?!\/)[A-Za-z0-9/_\-?=&.%]*$/.test(next) && !next.startsWith('/signin') ? next : '/';
}

export default async function signin(root, { query, session, navigate }) {
  const next = safeNext(query.next);
  const status = h('div', { 'aria-live': 'polite' });
  const done = () => navigate(next, { replace: true });

  if (auth.isLink(window.location.href)) {
    const href = window.location.href;
    const email = auth.rememberedEmail();
    const finish = async (address) => {
      try {
        await auth.finishLink(address, href);
        session.user = auth.user();
        done();
      } catch (err) {
        replace(status, problemBox(firebaseProblem(err)));
      }
    };
    if (email) {
      replace(root, h('section', { class: 'card narrow' }, h('h1', {}, 'Signing you in…'), status));
      return void (await finish(email));
    }
    // Opened on another device or browser: the address is needed again to finish.
    const input = h('input', { id: 'confirm-email', type: 'email', required: true, autocomplete: 'email' });
    replace(root, h('section', { class: 'card narrow' },
      h('h1', {}, 'Finish signing in'),
      h('form', { class: 'stack', onsubmit: (e) => { e.preventDefault(); finish(input.value.trim()); } },
        h('div', { class: 'field' }, h('label', { for: 'confirm-email' }, 'Your email address'), input),
        h('button', { class: 'btn primary', type: 'submit' }, 'Sign in')),
      status));
    return undefined;
  }

  if (session.user) return void done();

  const email = h('input', { id: 'email', type: 'email', required: true, autocomplete: 'email',
    placeholder: 'you@company.com' });
  const linkForm = h('form', { class: 'stack', onsubmit: async (e) => {
    e.preventDefault();
    const btn = linkForm.querySelector('button');
    btn.disabled = true;
    try {
      await auth.sendLink(email.value.trim(), next === '/' ? null : next);
      replace(status, h('div', { class: 'notice', role: 'status' },
        h('strong', {}, 'Check your inbox. '),
        `We sent a sign-in link to ${email.value.trim()}. Open it in this browser to continue.`,
        session.config.auth_emulator ? h('p', { class: 'small' },
          'Local Auth emulator: no email is sent; the link is in the emulator\'s log, and at ',
          h('code', {}, `${session.config.auth_emulator}/emulator/v1/projects/${session.config.firebase.projectId}/oobCodes`),
          '.') : null));
    } catch (err) {
      replace(status, problemBox(firebaseProblem(err)));
    } finally {
      btn.disabled = false;
    }
  } },
  h('div', { class: 'field' }, h('label', { for: 'email' }, 'Email address'), email),
  h('button', { class: 'btn primary', type: 'submit' }, 'Email me a sign-in link'));

  const googleBtn = h('button', { class: 'btn google', type: 'button', onclick: async () => {
    try {
      let as = null;
      if (auth.isEmulated()) {
        const chosen = await confirmDialog({
          title: 'Google (Auth emulator)',
          body: h('p', { class: 'muted' }, 'Locally the Auth emulator stands in for Google: say which Google '
            + 'account to sign in as. In production this is Google\'s own sign-in window.'),
          confirm: 'Sign in', fields: [{ name: 'email', label: 'Google account email', type: 'email', required: true }],
        });
        if (!chosen) return;
        as = chosen.email.trim();
      }
      await auth.google(as);
      session.user = auth.user();
      done();
    } catch (err) {
      if (err && err.code === 'auth/popup-closed-by-user') return;
      replace(status, problemBox(firebaseProblem(err)));
    }
  } }, h('span', { class: 'g', 'aria-hidden': 'true' }, 'G'), 'Continue with Google');

  replace(root, h('section', { class: 'card narrow signin' },
    h('h1', {}, 'Sign in to qorch'),
    h('p', { class: 'muted' }, 'Run your AI build team: follow every workflow, review the work, approve it.'),
    googleBtn,
    h('div', { class: 'or' }, h('span', {}, 'or')),
    linkForm,
    status,
    h('p', { class: 'small muted' },
      'New here? Sign in the same way; you can then create an account for your team or accept an invitation.')));
  return undefined;
}

// Firebase errors carry a code like auth/invalid-email; show them like the API's problems.
function firebaseProblem(err) {
  const code = (err && err.code) || '';
  const known = {
    'auth/invalid-email': 'That is not a valid email address.',
    'auth/invalid-action-code': 'This sign-in link has expired or was already used. Ask for a new one.',
    'auth/expired-action-code': 'This sign-in link has expired. Ask for a new one.',
    'auth/popup-blocked': 'The browser blocked the sign-in window. Allow pop-ups for this site and try again.',
    'auth/network-request-failed': 'The sign-in service cannot be reached.',
  };
  return { problem: { title: 'Sign-in failed', detail: known[code] || (err && err.message) || String(err) } };
}
