// The task-run timeline (a Gantt chart in SVG). Only the rows in view are drawn, so a flow run
// with tens of thousands of task runs scrolls as smoothly as one with ten.

import { attemptState, duration, h, s, stateColor, toMs } from './dom.js';

const ROW = 26;
// The label column: narrower on a phone, so the bars keep most of the width.
const labelWidth = (w) => (w < 600 ? 110 : 240);
let LABEL = 240;
const AXIS = 28;
const PAD = 16;
const OVERSCAN = 10;
const MAX_HEIGHT = 520;

/**
 * The bars of one task run: one segment per attempt (a failed attempt is `Retrying`), a `wait`
 * between attempts, from the run's state changes (`changes`, oldest first) if it has them, else
 * from its start and end.
 */
export function segmentsOf(run, changes, now) {
  const t = toMs;
  const segments = [];
  if (changes && changes.some((c) => c.state === 'Running')) {
    let open = null;
    let waitFrom = null;
    for (const c of changes) {
      const at = t(c.timestamp);
      if (c.state === 'Running') {
        if (waitFrom != null) segments.push({ kind: 'wait', from: waitFrom, to: at });
        waitFrom = null;
        open = { from: at, attempt: c.attempt };
      } else if (open) {
        segments.push({ kind: 'attempt', from: open.from, to: at, state: attemptState(c.state, c.message), attempt: open.attempt, message: c.message });
        open = null;
        if (c.state === 'Retrying') waitFrom = at;
      }
    }
    if (open) segments.push({ kind: 'attempt', from: open.from, to: now, state: 'Running', attempt: open.attempt });
    else if (waitFrom != null) segments.push({ kind: 'wait', from: waitFrom, to: now });
    return segments;
  }
  if (run.start) {
    segments.push({
      kind: 'attempt', from: t(run.start), to: run.end ? t(run.end) : now,
      state: run.state, attempt: run.attempts || 1, message: run.message,
    });
  } else if (run.end || run.created) {
    // Never ran (skipped, cancelled while pending): a mark where it ended.
    const at = t(run.end || run.created);
    segments.push({ kind: 'mark', from: at, to: at, state: run.state, message: run.message });
  }
  return segments;
}

function niceStep(span, target) {
  const raw = span / Math.max(1, target);
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}

/**
 * A timeline. `set(rows, [t0, t1])` shows rows `{ id, label, segments, upstream }`; clicking a row
 * calls `onSelect(row)`. `select(id)` highlights a row and scrolls to it; `destroy()` ends it.
 */
export function timeline({ onSelect }) {
  const axis = s('svg', { class: 'timeline-axis', height: AXIS, 'aria-hidden': 'true' });
  const spacer = h('div');
  const canvas = s('svg', { role: 'list', 'aria-label': 'Task runs on a time axis' });
  const body = h('div', { class: 'timeline-body', 'data-testid': 'timeline-body' }, spacer, canvas);
  const reset = h('button', { type: 'button', class: 'ghost zoom-reset', hidden: true, 'data-testid': 'zoom-reset' }, 'Reset zoom');
  const hint = h('span', { class: 'muted zoom-hint' }, 'Drag across the time axis to zoom in.');
  const el = h('div', {},
    h('div', { class: 'timeline', 'data-testid': 'timeline' }, axis, body),
    h('div', { class: 'zoom-bar' }, hint, reset));
  let rows = [];
  let index = new Map();
  // The whole run, and the part shown (a zoomed-in window, or all of it).
  let full = [0, 1];
  let t0 = 0;
  let t1 = 1;
  let zoomed = false;
  let drag = null;
  let selected = null;
  let pending = 0;
  // Read by the tests: when the first rows were drawn, and the slowest redraw since.
  const stats = { firstFrameAt: null, slowestFrameMs: 0, rows: 0 };

  // The body's width, read once per redraw (reading it after DOM changes forces a layout).
  let measured = LABEL + 200;
  const width = () => measured;
  const x = (t) => LABEL + ((t - t0) / Math.max(1, t1 - t0)) * (width() - LABEL - PAD);

  function ticks() {
    const step = niceStep(t1 - t0, (width() - LABEL) / 110);
    // Offsets from the start of the run, at round steps, within the part shown.
    const out = [];
    for (let v = Math.ceil((t0 - full[0]) / step) * step; full[0] + v <= t1 + 1; v += step) out.push(v);
    return out;
  }

  function drawAxis(marks) {
    const w = width();
    axis.setAttribute('width', w);
    const brush = drag && Math.abs(drag.to - drag.from) > 2
      ? s('rect', { class: 'brush', x: Math.min(drag.from, drag.to), y: 0, width: Math.abs(drag.to - drag.from), height: AXIS })
      : null;
    axis.replaceChildren(
      ...(brush ? [brush] : []),
      s('text', { x: 12, y: 18, class: 'axis' }, `${rows.length.toLocaleString()} task runs`),
      ...marks.map((v) => s('g', { class: 'axis' },
        s('line', { x1: x(full[0] + v), x2: x(full[0] + v), y1: AXIS - 6, y2: AXIS, class: 'grid' }),
        x(full[0] + v) > w - 56 ? null : s('text', { x: x(full[0] + v) + 3, y: 17 }, v === 0 ? '0' : `+${duration(v)}`))));
  }

  function drawRow(row, i, y) {
    const g = s('g', { class: 'row', role: 'listitem', 'data-testid': 'task-row', 'data-run-id': row.id, 'data-index': i, 'data-state': row.state, transform: `translate(0 ${y})` });
    g.addEventListener('click', () => { select(row.id, false); onSelect(row); });
    g.append(s('rect', { class: `row-bg${i % 2 ? ' alt' : ''}${row.id === selected ? ' selected' : ''}`, x: 0, y: 0, width: width(), height: ROW, fill: 'transparent' }));
    g.append(s('text', { x: 12, y: ROW / 2 + 4, 'clip-path': 'url(#label-clip)' }, row.label));
    const [lo, hi] = [LABEL, width() - PAD];
    for (const seg of row.segments) {
      if (seg.to < t0 || seg.from > t1) continue;
      const left = Math.max(lo, x(seg.from));
      if (seg.kind === 'wait') {
        g.append(s('line', { class: 'wait', 'data-testid': 'retry-wait', x1: left, x2: Math.min(hi, Math.max(left, x(seg.to))), y1: ROW / 2, y2: ROW / 2 },
          s('title', {}, `waiting ${duration(seg.to - seg.from)} before the next attempt`)));
        continue;
      }
      const title = `${row.label} · ${seg.kind === 'mark' ? seg.state : `attempt ${seg.attempt}`} · ${duration(seg.to - seg.from)}` +
        `${seg.state ? ` · ${seg.state}` : ''}${seg.message ? `: ${seg.message}` : ''}`;
      const w = Math.max(seg.kind === 'mark' ? 4 : 2, Math.min(hi, x(seg.to)) - left);
      g.append(s('rect', {
        class: 'segment', 'data-testid': 'segment', 'data-state': seg.state, 'data-attempt': seg.attempt ?? '',
        x: seg.kind === 'mark' ? left - 2 : left, y: 5, width: w, height: ROW - 10, rx: 2,
        fill: stateColor(seg.state), opacity: seg.kind === 'mark' ? 0.6 : 1,
      }, s('title', {}, title)));
    }
    return g;
  }

  function end(row) {
    const last = row.segments[row.segments.length - 1];
    return last ? last.to : t0;
  }

  function draw() {
    pending = 0;
    const began = performance.now();
    LABEL = labelWidth(body.clientWidth || 1000);
    measured = Math.max(body.clientWidth, LABEL + 120);
    const marks = ticks();
    drawAxis(marks);
    const w = width();
    const first = Math.max(0, Math.floor(body.scrollTop / ROW) - OVERSCAN);
    const last = Math.min(rows.length, Math.ceil((body.scrollTop + body.clientHeight) / ROW) + OVERSCAN);
    const height = Math.max(0, last - first) * ROW;
    canvas.setAttribute('width', w);
    canvas.setAttribute('height', height);
    canvas.style.top = `${first * ROW}px`;
    const parts = [
      s('defs', {}, s('clipPath', { id: 'label-clip' }, s('rect', { x: 0, y: 0, width: LABEL - 12, height: ROW }))),
      ...marks.map((v) => s('line', { class: 'grid', x1: x(full[0] + v), x2: x(full[0] + v), y1: 0, y2: height })),
      s('line', { class: 'label-sep', x1: LABEL - 4, x2: LABEL - 4, y1: 0, y2: height }),
    ];
    for (let i = first; i < last; i++) parts.push(drawRow(rows[i], i, (i - first) * ROW));
    // Upstream lines: from the end of an upstream run to the start of the run that waited for it.
    const deps = s('g', {});
    for (let i = first; i < last; i++) {
      const row = rows[i];
      const start = row.segments[0];
      if (!start || !row.upstream.length) continue;
      for (const up of row.upstream) {
        const j = index.get(up);
        if (j == null || j < first || j >= last) continue;
        const clamp = (v) => Math.min(Math.max(v, LABEL), width() - PAD);
        const x1 = clamp(x(end(rows[j])));
        const y1 = (j - first) * ROW + ROW / 2;
        const x2 = clamp(x(start.from));
        const y2 = (i - first) * ROW + ROW / 2;
        const bend = Math.max(8, (x2 - x1) / 2);
        const hot = selected === row.id || selected === up;
        deps.append(s('path', {
          class: hot ? 'dep hot' : 'dep', 'data-testid': 'dependency',
          d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`,
        }));
      }
    }
    parts.push(deps);
    canvas.replaceChildren(...parts);
    const took = performance.now() - began;
    stats.rows = rows.length;
    stats.slowestFrameMs = Math.max(stats.slowestFrameMs, took);
    if (rows.length) stats.firstFrameAt ??= performance.now();
  }

  function schedule() {
    if (!pending) pending = requestAnimationFrame(draw);
  }

  function set(newRows, range) {
    rows = newRows;
    index = new Map(rows.map((r, i) => [r.id, i]));
    full = [range[0], Math.max(range[1], range[0] + 1)];
    if (!zoomed) [t0, t1] = full;
    spacer.style.height = `${rows.length * ROW}px`;
    body.style.height = `${Math.max(ROW * 2, Math.min(rows.length * ROW, MAX_HEIGHT))}px`;
    schedule();
  }

  function select(id, scroll = true) {
    selected = id;
    const i = index.get(id);
    if (scroll && i != null && (i * ROW < body.scrollTop || (i + 1) * ROW > body.scrollTop + body.clientHeight)) {
      body.scrollTop = Math.max(0, i * ROW - body.clientHeight / 2);
    }
    schedule();
  }

  // Zoom: drag across the axis to show that span; "Reset zoom" shows the whole run again.
  const at = (event) => event.clientX - axis.getBoundingClientRect().left;
  const timeAt = (px) => t0 + ((Math.min(Math.max(px, LABEL), width() - PAD) - LABEL) / (width() - LABEL - PAD)) * (t1 - t0);
  axis.addEventListener('mousedown', (event) => { drag = { from: at(event), to: at(event) }; event.preventDefault(); });
  const move = (event) => { if (drag) { drag.to = at(event); schedule(); } };
  const up = () => {
    if (!drag) return;
    const [a, b] = [timeAt(Math.min(drag.from, drag.to)), timeAt(Math.max(drag.from, drag.to))];
    drag = null;
    if (b - a > (t1 - t0) / 1000 && b > a) {
      [t0, t1] = [a, b];
      zoomed = true;
      reset.hidden = false;
      hint.hidden = true;
    }
    schedule();
  };
  window.addEventListener('mousemove', move);
  window.addEventListener('mouseup', up);
  reset.addEventListener('click', () => {
    zoomed = false;
    [t0, t1] = full;
    reset.hidden = true;
    hint.hidden = false;
    schedule();
  });
  body.addEventListener('scroll', schedule, { passive: true });
  const resize = new ResizeObserver(schedule);
  resize.observe(body);
  window.flowkitTimeline = stats;
  /** Stops listening to the window (when the page goes). */
  function destroy() {
    window.removeEventListener('mousemove', move);
    window.removeEventListener('mouseup', up);
    resize.disconnect();
    if (pending) cancelAnimationFrame(pending);
  }
  return { el, set, select, destroy };
}
