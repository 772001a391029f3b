// A signed-in person who belongs to no account yet: accept an invitation, or create an account (they become its
// OWNER; it can create workflows once it pays, through Stripe Checkout on the account page).
import * as api from '../api.js';
import { useAccount } from '../main.js';
import { h, problemBox, replace } from '../ui.js';

export default async function welcome(root, { session, navigate }) {
  const status = h('div', { 'aria-live': 'polite' });
  const name = h('input', { id: 'acct-name', required: true, maxlength: 200, placeholder: 'Acme Inc.',
    autocomplete: 'organization' });
  const form = h('form', { class: 'stack', onsubmit: async (e) => {
    e.preventDefault();
    const btn = form.querySelector('button');
    btn.disabled = true;
    try {
      const made = await api.post('/accounts', { name: name.value.trim() });
      await useAccount(made.id);
      navigate('/account', { replace: true });
    } catch (err) {
      replace(status, problemBox(err));
      btn.disabled = false;
    }
  } },
  h('div', { class: 'field' }, h('label', { for: 'acct-name' }, 'Team or company name'), name),
  h('button', { class: 'btn primary', type: 'submit' }, 'Create account'));

  const accept = h('button', { class: 'btn', type: 'button', onclick: async () => {
    accept.disabled = true;
    try {
      const joined = await api.post('/members/accept', {});
      await useAccount(joined.account_id || (joined.member && joined.member.account_id));
      navigate('/', { replace: true });
    } catch (err) {
      replace(status, problemBox(err));
      accept.disabled = false;
    }
  } }, 'Accept my invitation');

  replace(root, h('section', { class: 'card narrow' },
    h('h1', {}, 'Welcome to qorch'),
    h('p', {}, `Signed in as ${session.user.email || session.user.uid}. You are not a member of any account yet.`),
    h('h2', {}, 'Invited by your team?'),
    h('p', { class: 'muted small' }, 'If someone invited this email address, join their account.'),
    accept,
    h('h2', {}, 'Or start a new account'),
    h('p', { class: 'muted small' }, 'You become its owner. Choose a plan on the next page to start workflows.'),
    form,
    status));
}
