// Building the page: elements from plain data (text is never parsed as HTML), formats, badges.

export const STATES = ['Scheduled', 'Pending', 'Running', 'Retrying', 'Completed', 'Cached',
  'Failed', 'Crashed', 'TimedOut', 'Cancelled', 'Skipped'];
export const TERMINAL = new Set(['Completed', 'Cached', 'Failed', 'Crashed', 'TimedOut', 'Cancelled', 'Skipped']);

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'style' && typeof value === 'object') {
      for (const [prop, v] of Object.entries(value)) {
        if (prop.startsWith('--')) el.style.setProperty(prop, v);
        else el.style[prop] = v;
      }
    }
    else el.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** An HTML element: `h('a', {href}, 'text', child)`. */
export const h = (tag, attrs, ...children) => build(document.createElement(tag), attrs, children);
/** An SVG element. */
export const s = (tag, attrs, ...children) =>
  build(document.createElementNS('http://www.w3.org/2000/svg', tag), attrs, children);

/** The CSS color of a state. */
export const stateColor = (state) => `var(--state-${STATES.includes(state) ? state : 'Pending'})`;

export function badge(state, big = false) {
  return h('span', { class: big ? 'badge big' : 'badge', style: { '--state': stateColor(state) }, 'data-state': state }, state);
}

/** Milliseconds since the epoch of an RFC 3339 time, keeping the digits below the millisecond. */
export function toMs(iso) {
  const whole = Date.parse(iso);
  const fraction = /\.(\d+)/.exec(iso);
  return fraction && fraction[1].length > 3 ? whole + Number(`0.${fraction[1].slice(3)}`) : whole;
}

export function duration(ms) {
  if (ms == null || !isFinite(ms)) return '—';
  if (ms < 1) return `${(ms * 1000).toFixed(0)} µs`;
  if (ms < 1000) return `${ms < 10 ? ms.toFixed(1) : ms.toFixed(0)} ms`;
  const sec = ms / 1000;
  if (sec < 60) return `${sec.toFixed(sec < 10 ? 2 : 1)} s`;
  const min = Math.floor(sec / 60);
  if (min < 60) return `${min}m ${Math.round(sec % 60)}s`;
  return `${Math.floor(min / 60)}h ${min % 60}m`;
}

const timeFormat = new Intl.DateTimeFormat(undefined, {
  month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
});
export const time = (iso) => (iso ? timeFormat.format(new Date(iso)) : '—');

export function clock(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function relative(iso) {
  if (!iso) return 'never';
  const sec = (Date.now() - new Date(iso).getTime()) / 1000;
  if (sec < -45) {
    const ahead = -sec;
    if (ahead < 3600) return `in ${Math.round(ahead / 60)} min`;
    if (ahead < 86400) return `in ${Math.round(ahead / 3600)} h`;
    return `in ${Math.round(ahead / 86400)} d`;
  }
  if (sec < 45) return 'just now';
  if (sec < 3600) return `${Math.round(sec / 60)} min ago`;
  if (sec < 86400) return `${Math.round(sec / 3600)} h ago`;
  return `${Math.round(sec / 86400)} d ago`;
}

export const shortId = (id) => (id ? id.slice(-8) : '');

/** Milliseconds a run has taken (so far, if it is still going). */
export function elapsed(run) {
  if (run.duration_ms != null) return run.duration_ms;
  if (run.start && !TERMINAL.has(run.state)) return Date.now() - new Date(run.start).getTime();
  return null;
}

/** A message saying what is wrong and what to do, with a retry button. */
export function errorState(error, retry) {
  return h('div', { class: 'callout', role: 'alert', 'data-testid': 'error' },
    h('strong', {}, 'Could not load this page. '), error.message || String(error),
    retry ? h('div', { style: { marginTop: '8px' } }, h('button', { type: 'button', onclick: retry }, 'Try again')) : null);
}

/** Calls `fn` at most once per `ms`, at the end of the wait (with the first call's arguments). */
export function throttle(fn, ms) {
  let timer = null;
  let last = 0;
  return (...args) => {
    if (timer) return;
    const wait = Math.max(0, last + ms - Date.now());
    timer = setTimeout(() => { timer = null; last = Date.now(); fn(...args); }, wait);
  };
}

/** A click on a table row opens the run, unless it was on the row's link (new tab, copy link…). */
export function openRow(event, id) {
  if (event.target.closest('a') || event.ctrlKey || event.metaKey || event.shiftKey) return;
  location.hash = `#/runs/${id}`;
}

/** A pill in a state's color with words of its own: `pill('online', 'Completed')`. */
export function pill(label, state) {
  return h('span', { class: 'badge', style: { '--state': stateColor(state) }, 'data-state': state, 'data-status': label }, label);
}

/** A `Scheduled` run this long past its time is late: no worker has taken it. */
export const LATE_AFTER_MS = 5000;

export function isLate(state, scheduled, now = Date.now()) {
  return state === 'Scheduled' && !!scheduled && now - new Date(scheduled).getTime() > LATE_AFTER_MS;
}

/** The "late" mark of a run, saying by how much. */
export function lateTag(scheduled) {
  return h('span', { class: 'tag late', 'data-testid': 'late', title: `Due ${time(scheduled)}; no worker has started it` }, 'late');
}

let lastId = 0;
/** An id unique in the page, to tie a label or a message to its input. */
export const uid = (prefix) => `${prefix}-${++lastId}`;

/** States in which a run went wrong. */
export const FAILED = ['Failed', 'Crashed', 'TimedOut'];

/** The first line of an error, at most `max` characters. */
export function snippet(message, max = 120) {
  const line = String(message || '').split('\n').find((l) => l.trim()) || '';
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** `day=2026-11-28 shard=3`: a run's parameters on one short line. */
export function paramSummary(parameters, max = 80) {
  if (!parameters || typeof parameters !== 'object') return '';
  const text = Object.entries(parameters)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** A compact bar of a flow run's task runs by state, with the failures counted in words. */
export function taskBar(counts) {
  const entries = STATES.filter((st) => counts && counts[st]).map((st) => [st, counts[st]]);
  const total = entries.reduce((n, [, c]) => n + c, 0);
  if (!total) return h('span', { class: 'muted small', 'data-testid': 'task-bar', 'data-total': '0' }, 'no tasks');
  const failed = FAILED.reduce((n, st) => n + (counts[st] || 0), 0);
  const title = entries.map(([st, c]) => `${c.toLocaleString()} ${st}`).join(' · ');
  return h('div', { class: 'taskbar', 'data-testid': 'task-bar', 'data-total': String(total), 'data-failed': String(failed), title },
    h('div', { class: 'stack', role: 'img', 'aria-label': title },
      entries.map(([st, c]) => h('span', { 'data-state': st, style: { '--state': stateColor(st), flexGrow: String(c) } }))),
    h('div', { class: `small ${failed ? 'error-text' : 'muted'}` },
      failed ? `${failed.toLocaleString()} of ${total.toLocaleString()} failed` : `${total.toLocaleString()} tasks`));
}

/** The URL of a task run's page. */
export const taskUrl = (flowRunId, taskRunId) => `#/runs/${flowRunId}/tasks/${taskRunId}`;

/**
 * Labels of task runs as the console prints them: `name [i]` for a mapped run, `name#n` for the
 * n-th call of a task called more than once. Returns a Map of id to label.
 */
export function taskLabels(taskRuns, into = new Map()) {
  const seen = new Map();
  for (const t of taskRuns) {
    if (t.map_index != null) {
      into.set(t.id, `${t.name} [${t.map_index}]`);
      continue;
    }
    const n = (seen.get(t.name) || 0) + 1;
    seen.set(t.name, n);
    into.set(t.id, n > 1 ? `${t.name}#${n}` : t.name);
  }
  return into;
}

/** A failed attempt that timed out is drawn as TimedOut, even when a retry followed. */
export const attemptState = (state, message) =>
  state === 'Retrying' && /^timed out after/.test(message || '') ? 'TimedOut' : state;

/** A parameter value: short JSON on one line, long JSON indented. */
export function paramText(v) {
  if (typeof v === 'string') return v;
  const flat = JSON.stringify(v);
  return flat.length <= 100 ? flat : JSON.stringify(v, null, 2);
}

/**
 * "2 of 3", and why a run stopped before its retries were spent: a `Failed` run that made fewer
 * attempts than it could was refused by its `retry_if`; a crash is never retried.
 */
export function attemptsText(run) {
  const total = (run.retries ?? 0) + 1;
  const text = `${run.attempts} of ${total}`;
  if (run.attempts >= total || !TERMINAL.has(run.state)) return text;
  if (run.state === 'Failed') return `${text} · retry_if refused to retry`;
  if (run.state === 'Crashed') return `${text} · a panic is not retried`;
  return text;
}
