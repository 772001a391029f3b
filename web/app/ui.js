// Small DOM helpers: every page builds its nodes with h(); text always goes in as text, never as HTML, so what
// agents write (titles, notes, artifacts) cannot inject markup.

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}

// ---- formatting ------------------------------------------------------------------------------------------------

const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
export const when = (iso) => (iso ? dateFmt.format(new Date(iso)) : '');

export function ago(iso, now = Date.now()) {
  if (!iso) return '';
  const secs = Math.round((now - new Date(iso).getTime()) / 1000);
  if (secs < 45) return 'just now';
  const mins = Math.round(secs / 60);
  if (mins < 60) return `${mins} min ago`;
  const hours = Math.round(mins / 60);
  if (hours < 24) return `${hours} h ago`;
  const days = Math.round(hours / 24);
  return days < 30 ? `${days} d ago` : when(iso);
}

export function timeTag(iso) {
  return h('time', { datetime: iso, title: when(iso) }, ago(iso));
}

export function countdown(iso, now = Date.now()) {
  const secs = Math.round((new Date(iso).getTime() - now) / 1000);
  if (secs <= 0) return 'lease expired';
  const m = Math.floor(secs / 60), r = secs % 60;
  return `${m}:${String(r).padStart(2, '0')} left`;
}

export function money(v) {
  if (v === null || v === undefined) return '—';
  return new Intl.NumberFormat(undefined, { style: 'currency', currency: 'USD',
    maximumFractionDigits: v > 0 && v < 1 ? 4 : 2 }).format(v);
}

export const num = (v) => (v === null || v === undefined ? '—' : new Intl.NumberFormat().format(v));

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export const pretty = (name) => (name || '').toLowerCase().replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase());

// The main line a workflow walks, DISCOVERY … DEPLOYMENT: "phase x of 8" on the way to COMPLETED.
export const PHASES = ['DISCOVERY', 'PLANNING', 'DESIGN', 'IMPLEMENTATION', 'TESTING', 'VERIFICATION', 'REVIEW',
  'DEPLOYMENT'];

export function stateBadge(state) {
  return h('span', { class: `badge st-${state.toLowerCase()}` }, pretty(state));
}

export function progress(state) {
  const i = PHASES.indexOf(state);
  const done = state === 'COMPLETED' ? PHASES.length : i;
  const label = state === 'COMPLETED' ? 'Completed (8 of 8)'
    : i >= 0 ? `Phase ${i + 1} of ${PHASES.length}` : pretty(state);
  return h('div', { class: 'progress' },
    h('div', { class: 'bar', role: 'img', 'aria-label': label },
      PHASES.map((_, k) => h('span', { class: k < done ? 'done' : k === i ? 'now' : '' }))),
    h('span', { class: 'small' }, label));
}

// ---- feedback --------------------------------------------------------------------------------------------------

// A person's action that leaves the page when it works (a redirect, a navigation): its button is disabled while it
// runs so a second click sends nothing; a refusal shows in `status` and gives the button back.
export async function act(btn, status, action) {
  btn.disabled = true;
  try {
    await action();
  } catch (err) {
    replace(status, problemBox(err));
    btn.disabled = false;
  }
}

// A refusal from the API shows its problem's title and detail (and each field error), in an alert.
export function problemBox(err) {
  const p = err && err.problem ? err.problem : { title: 'Something went wrong', detail: String(err && err.message) };
  return h('div', { class: 'problem', role: 'alert' },
    h('strong', {}, p.title || 'Refused'),
    p.detail ? h('p', {}, p.detail) : null,
    Array.isArray(p.errors) && p.errors.length
      ? h('ul', {}, p.errors.map((e) => h('li', {}, `${e.field}: ${e.message}`))) : null);
}

export function toast(text, kind = 'ok') {
  const box = document.getElementById('toasts');
  const t = h('div', { class: `toast ${kind}` }, text);
  box.append(t);
  setTimeout(() => t.remove(), 3500);
}

let dialogSeq = 0;

// A modal confirmation (native <dialog>: focus is trapped, Esc cancels). `fields` are labelled inputs; `run` does
// the work and may throw a problem, which is shown in the dialog so the person can correct and try again.
// Resolves with run's result, or null when cancelled.
export function confirmDialog({ title, body, confirm = 'Confirm', danger = false, fields = [], run }) {
  return new Promise((resolve) => {
    const id = `dlg${++dialogSeq}`;
    const errorSlot = h('div');
    const inputs = {};
    const form = h('form', { method: 'dialog', class: 'stack' },
      h('h2', { id: `${id}-t` }, title),
      body ? h('div', { class: 'dialog-body' }, body) : null,
      fields.map((f) => {
        const fid = `${id}-${f.name}`;
        const attrs = { id: fid, name: f.name, required: f.required, placeholder: f.placeholder,
          min: f.min, step: f.step, value: f.value };
        const input = f.type === 'textarea' ? h('textarea', { ...attrs, rows: 4 })
          : f.type === 'select' ? h('select', attrs, f.options.map(([v, l]) => h('option', { value: v }, l)))
          : f.type === 'checkbox' ? h('input', { ...attrs, type: 'checkbox', value: null, checked: Boolean(f.value) })
          : h('input', { ...attrs, type: f.type || 'text' });
        inputs[f.name] = input;
        return f.type === 'checkbox'
          ? h('label', { class: 'check', for: fid }, input, ' ', f.label)
          : h('div', { class: 'field' }, h('label', { for: fid }, f.label), input,
            f.hint ? h('small', { class: 'muted' }, f.hint) : null);
      }),
      errorSlot,
      h('div', { class: 'row end' },
        h('button', { type: 'button', class: 'btn', value: 'cancel', onclick: () => close(null) }, 'Cancel'),
        h('button', { type: 'submit', class: `btn ${danger ? 'danger' : 'primary'}`, value: 'ok' }, confirm)));
    const dlg = h('dialog', { 'aria-labelledby': `${id}-t` }, form);
    let done = false;
    const close = (v) => { if (done) return; done = true; dlg.close(); dlg.remove(); resolve(v); };
    dlg.addEventListener('cancel', (e) => { e.preventDefault(); close(null); });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const values = {};
      for (const [k, el] of Object.entries(inputs)) values[k] = el.type === 'checkbox' ? el.checked : el.value;
      const btns = form.querySelectorAll('button');
      btns.forEach((b) => { b.disabled = true; });
      try {
        const result = run ? await run(values) : values;
        close(result === undefined ? true : result);
      } catch (err) {
        replace(errorSlot, problemBox(err));
        btns.forEach((b) => { b.disabled = false; });
      }
    });
    document.body.append(dlg);
    dlg.showModal();
  });
}

export function emptyState(text, ...extra) {
  return h('div', { class: 'empty' }, h('p', {}, text), ...extra);
}
