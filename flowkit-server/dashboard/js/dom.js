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
