// A small Markdown renderer for artifact previews. Artifacts are written by agents, so they are untrusted: this
// builds DOM nodes with text content only (no HTML passes through), and links keep only http(s) and mailto URLs.
// It covers what agents write in reports: headings, paragraphs, lists, code blocks, quotes, rules, tables,
// emphasis, inline code and links.
import { h } from './ui.js';

export function renderMarkdown(text) {
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  const out = h('div', { class: 'md' });
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if (!line.trim()) { i++; continue; }
    if ((m = line.match(/^\s*(```|~~~)\s*([\w+-]*)/))) {
      const fence = m[1];
      const code = [];
      for (i++; i < lines.length && !lines[i].trim().startsWith(fence); i++) code.push(lines[i]);
      i++;
      out.append(h('pre', {}, h('code', { 'data-lang': m[2] || null }, code.join('\n'))));
    } else if ((m = line.match(/^(#{1,6})\s+(.*?)\s*#*\s*$/))) {
      out.append(h(`h${Math.min(6, m[1].length + 2)}`, {}, inline(m[2])));
      i++;
    } else if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) {
      out.append(h('hr'));
      i++;
    } else if (/^\s*>/.test(line)) {
      const quoted = [];
      for (; i < lines.length && /^\s*>/.test(lines[i]); i++) quoted.push(lines[i].replace(/^\s*>\s?/, ''));
      out.append(h('blockquote', {}, renderMarkdown(quoted.join('\n'))));
    } else if (/^\s*([-*+]|\d+[.)])\s+/.test(line)) {
      const ordered = /^\s*\d/.test(line);
      const list = h(ordered ? 'ol' : 'ul');
      for (; i < lines.length && /^\s*([-*+]|\d+[.)])\s+/.test(lines[i]); i++) {
        const item = lines[i].replace(/^\s*([-*+]|\d+[.)])\s+/, '');
        const task = item.match(/^\[([ xX])\]\s+(.*)$/);
        list.append(task
          ? h('li', { class: 'task' }, task[1] === ' ' ? '☐ ' : '☑ ', inline(task[2]))
          : h('li', {}, inline(item)));
      }
      out.append(list);
    } else if (line.includes('|') && i + 1 < lines.length && /^\s*\|?\s*:?-{3,}/.test(lines[i + 1])) {
      const cells = (l) => l.trim().replace(/^\||\|$/g, '').split('|').map((c) => c.trim());
      const head = cells(line);
      const body = [];
      for (i += 2; i < lines.length && lines[i].includes('|') && lines[i].trim(); i++) body.push(cells(lines[i]));
      out.append(h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, head.map((c) => h('th', {}, inline(c))))),
        h('tbody', {}, body.map((r) => h('tr', {}, r.map((c) => h('td', {}, inline(c)))))))));
    } else {
      const para = [];
      for (; i < lines.length && lines[i].trim() && !/^(\s*(```|~~~|#{1,6}\s|>|[-*+]\s|\d+[.)]\s))/.test(lines[i]); i++) {
        para.push(lines[i].trim());
      }
      if (!para.length) { para.push(lines[i].trim()); i++; }
      out.append(h('p', {}, inline(para.join(' '))));
    }
  }
  return out;
}

const INLINE = /(`+)([^`]+?)\1|\*\*([^*]+)\*\*|__([^_]+)__|\*([^*\s][^*]*)\*|_([^_\s][^_]*)_|\[([^\]]+)\]\(([^)\s]+)\)/;

function inline(text) {
  const nodes = [];
  let rest = text;
  let m;
  while ((m = rest.match(INLINE))) {
    if (m.index) nodes.push(rest.slice(0, m.index));
    if (m[2] !== undefined) nodes.push(h('code', {}, m[2]));
    else if (m[3] !== undefined || m[4] !== undefined) nodes.push(h('strong', {}, inline(m[3] ?? m[4])));
    else if (m[5] !== undefined || m[6] !== undefined) nodes.push(h('em', {}, inline(m[5] ?? m[6])));
    else if (m[7] !== undefined) {
      const safe = /^(https?:|mailto:)/i.test(m[8]);
      nodes.push(safe ? h('a', { href: m[8], rel: 'noopener noreferrer nofollow', target: '_blank' }, inline(m[7]))
        : m[7]);
    }
    rest = rest.slice(m.index + m[0].length);
  }
  if (rest) nodes.push(rest);
  return nodes;
}
