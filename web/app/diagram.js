// The state diagram, drawn from GET /v1/state-machine (never restated here): the main line top to bottom, rework
// as arcs on the left, FAILED and CANCELLED on the right. The current state is lit; the path the workflow took is
// drawn over the table's edges, rework in amber, failures in red, rollbacks dashed. Each edge taken more than once
// says how often.
import { PHASES, pretty, s } from './ui.js';

const MAIN = [...PHASES, 'COMPLETED'];
const NODE_W = 150, NODE_H = 30, PITCH = 54, MX = 78, TOP = 12;
const SIDE = { CANCELLED: 1.5, FAILED: 5 }; // rows of the right-hand column
const RX = 268, RW = 96;

function box(state) {
  const i = MAIN.indexOf(state);
  if (i >= 0) return { x: MX, y: TOP + i * PITCH, w: NODE_W, cx: MX + NODE_W / 2, cy: TOP + i * PITCH + NODE_H / 2 };
  const row = SIDE[state] ?? 3;
  return { x: RX, y: TOP + row * PITCH, w: RW, cx: RX + RW / 2, cy: TOP + row * PITCH + NODE_H / 2 };
}

function edgePath(from, to, kind) {
  const a = box(from), b = box(to);
  const ia = MAIN.indexOf(from), ib = MAIN.indexOf(to);
  if (ia >= 0 && ib === ia + 1) return `M${a.cx} ${a.y + NODE_H} L${b.cx} ${b.y}`;
  if (ia >= 0 && ib >= 0 && kind !== 'rollback') { // rework: an arc out to the left, longer spans further out
    const out = MX - 14 - Math.abs(ia - ib) * 9;
    return `M${a.x} ${a.cy} C${out} ${a.cy} ${out} ${b.cy} ${b.x} ${b.cy}`;
  }
  if (ia >= 0 && ib >= 0) { // a rollback between two main states: an arc on the right of the main line
    const out = MX + NODE_W + 10 + Math.abs(ia - ib) * 5;
    return `M${a.x + NODE_W} ${a.cy + 4} C${out} ${a.cy + 4} ${out} ${b.cy + 4} ${b.x + NODE_W} ${b.cy + 4}`;
  }
  if (ia >= 0) { // to the right-hand column (fail, cancel)
    return `M${a.x + NODE_W} ${a.cy} C${a.x + NODE_W + 30} ${a.cy} ${b.x - 30} ${b.cy} ${b.x} ${b.cy}`;
  }
  // from the right-hand column back into the main line (a rollback out of FAILED)
  return `M${a.x} ${a.cy + 6} C${a.x - 30} ${a.cy + 6} ${b.x + NODE_W + 30} ${b.cy + 6} ${b.x + NODE_W} ${b.cy + 6}`;
}

// Each step the events took, with its kind from the table ('rollback' for ROLLED_BACK events).
export function steps(machine, events) {
  const kinds = new Map(machine.transitions.map((t) => [`${t.from}>${t.to}`, t.kind]));
  return events.filter((e) => e.from_state).map((e) => ({
    from: e.from_state, to: e.to_state, seq: e.seq,
    kind: e.type === 'ROLLED_BACK' ? 'rollback' : kinds.get(`${e.from_state}>${e.to_state}`) || 'forward',
  }));
}

export function diagram(machine, workflow, events) {
  const taken = steps(machine, events);
  const visited = new Set(events.map((e) => e.to_state));
  const counts = new Map();
  for (const t of taken) {
    const key = `${t.from}>${t.to}>${t.kind}`;
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  const defs = s('defs', {}, ['base', 'forward', 'rework', 'fail', 'cancel', 'rollback'].map((k) =>
    s('marker', { id: `arr-${k}`, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 9, markerHeight: 9,
      markerUnits: 'userSpaceOnUse', orient: 'auto-start-reverse' }, s('path', { d: 'M0 0 L10 5 L0 10 z', class: `mk ${k}` }))));
  const base = machine.transitions.map((t) => s('path', { d: edgePath(t.from, t.to, t.kind),
    class: `edge ${t.kind}`, 'marker-end': 'url(#arr-base)' }));
  const seen = new Set();
  const drawn = [];
  for (const t of taken) {
    const key = `${t.from}>${t.to}>${t.kind}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const d = edgePath(t.from, t.to, t.kind);
    const path = s('path', { d, class: `edge taken ${t.kind}`, 'marker-end': `url(#arr-${t.kind})`,
      'data-from': t.from, 'data-to': t.to, 'data-kind': t.kind },
    s('title', {}, `${pretty(t.from)} → ${pretty(t.to)} (${t.kind}), ${counts.get(key)}×`));
    drawn.push(path);
    if (counts.get(key) > 1) {
      const a = box(t.from), b = box(t.to);
      const ia = MAIN.indexOf(t.from), ib = MAIN.indexOf(t.to);
      const rework = ia >= 0 && ib >= 0 && t.kind !== 'rollback' && ib !== ia + 1;
      const x = rework ? MX - 18 - Math.abs(ia - ib) * 7 : (a.cx + b.cx) / 2 + 12;
      drawn.push(s('text', { x, y: (a.cy + b.cy) / 2 + 4, class: `count ${t.kind}` }, `×${counts.get(key)}`));
    }
  }
  const states = machine.states.map((st) => {
    const b = box(st.name);
    const current = st.name === workflow.state;
    const cls = ['node', st.kind, visited.has(st.name) ? 'visited' : '', current ? 'current' : ''].join(' ');
    return s('g', { class: cls, 'data-state': st.name, 'aria-current': current ? 'step' : null },
      s('title', {}, `${pretty(st.name)}: ${st.description}`),
      s('rect', { x: b.x, y: b.y, width: b.w, height: NODE_H, rx: 8 }),
      s('text', { x: b.cx, y: b.cy + 4.5, 'text-anchor': 'middle' }, pretty(st.name)));
  });
  const height = TOP * 2 + (MAIN.length - 1) * PITCH + NODE_H;
  const path = [events[0] && events[0].to_state, ...taken.map((t) => t.to)].filter(Boolean).map(pretty);
  return s('svg', { viewBox: `0 0 ${RX + RW + 6} ${height}`, class: 'diagram', role: 'img',
    'aria-label': `State diagram. Now ${pretty(workflow.state)}. Path taken: ${path.join(', ')}.` },
  defs, s('g', { class: 'base' }, base), s('g', { class: 'path' }, drawn), s('g', {}, states));
}
