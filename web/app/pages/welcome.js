// A signed-in person who belongs to no account yet: accept an invitation, or create an account (they become its
// OWNER; it can create workflows once it pays, through Stripe Checkout on the account page).
import * as api from '../api.js';
import { useAccount } from '../main.js';
import { act, h, pretty, replace } from '../ui.js';

export default async function welcome(root, { session, navigate }) {
  const status = h('div', { 'aria-live': 'polite' });
  const name = h('input', { id: 'acct-name', required: true, maxlength: 200, placeholder: 'Acme Inc.',
    autocomplete: 'organization' });
  const form = h('form', { class: 'stack', onsubmit: (e) => {
    e.preventDefault();
    return act(form.querySelector('button'), status, async () => {
      const made = await api.post('/accounts', { name: name.value.trim() });
      await useAccount(made.id);
      navigate('/account', { replace: true });
    });
  } },
  h('div', { class: 'field' }, h('label', { for: 'acct-name' }, 'Team or company name'), name),
  h('button', { class: 'btn primary', type: 'submit' }, 'Create account'));

  const me = session.person || await api.get('/me');
  const invitations = me.invitations || [];
  const join = (btn, inv) => act(btn, status, async () => {
    await api.post('/members/accept', { account_id: inv.account_id });
    await useAccount(inv.account_id);
    navigate('/', { replace: true });
  });

  replace(root, h('section', { class: 'card narrow' },
    h('h1', {}, 'Welcome to qorch'),
    h('p', {}, `Signed in as ${session.user.email || session.user.uid}. You are not a member of any account yet.`),
    invitations.length ? [
      h('h2', {}, 'Your invitations'),
      h('ul', { class: 'plain' }, invitations.map((inv) => {
        const btn = h('button', { class: 'btn primary', type: 'button', 'data-action': 'accept' }, 'Join');
        btn.addEventListener('click', () => join(btn, inv));
        return h('li', { class: 'row between invitation' },
          h('span', {}, 'Account ', h('strong', {}, inv.account_name || inv.account_id),
            h('span', { class: 'muted small' }, ` as ${inv.roles.map(pretty).join(', ')}`)), btn);
      })),
      h('h2', {}, 'Or start a new account')]
      : [h('p', { class: 'muted small' }, 'No invitation is waiting for this email address. If your team uses qorch, '
        + 'ask an owner to invite you; or start your own account.'), h('h2', {}, 'Start a new account')],
    h('p', { class: 'muted small' }, 'You become its owner. Choose a plan on the next page to start workflows.'),
    form,
    status));
}
