// Backfills: a deployment run over a past range, one run per interval. The list (with a form to
// start one), and one backfill drawn as a calendar of its intervals in state colors.

import { get, send } from './api.js';
import { STATES, TERMINAL, errorState, h, pill, relative, shortId, stateColor, throttle, time } from './dom.js';
import { errors, field } from './form.js';

/** A backfill's status in the colors of run states. */
const COLORS = { running: 'Running', done: 'Completed', cancelled: 'Cancelled' };
const NOT_RUN = 'Not run';
const DAY = 86400e3;

const day = (iso) => (iso || '').slice(0, 10);
const range = (b) => `${day(b.start)} → ${day(b.end)}`;

/** How many intervals are in each state (`Not run` for those without a run), in the states' order. */
function countsOf(intervals) {
  const counts = new Map();
  for (const i of intervals) {
    const state = i.state || NOT_RUN;
    counts.set(state, (counts.get(state) || 0) + 1);
  }
  const order = [...STATES, NOT_RUN];
  return [...counts].sort(([a], [b]) => order.indexOf(a) - order.indexOf(b));
}

/** A bar split by state: how far a backfill is. */
function progress(intervals) {
  const ended = intervals.filter((i) => TERMINAL.has(i.state)).length;
  return h('div', { class: 'progress', 'data-testid': 'backfill-progress' },
    h('span', { class: 'stack', 'aria-hidden': 'true' }, countsOf(intervals).map(([state, n]) =>
      h('span', { style: { '--state': state === NOT_RUN ? 'var(--panel-2)' : stateColor(state), flexGrow: String(n) }, title: `${state}: ${n}` }))),
    h('span', { class: 'muted small' }, `${ended} of ${intervals.length} ended`));
}

export function backfillsPage({ root, params, subscribe }) {
  let stopped = false;
  const list = h('div', { 'data-testid': 'backfills' }, h('div', { class: 'loading' }, 'Loading backfills…'));
  const formSlot = h('div');
  root.append(h('div', { class: 'page-head' }, h('h1', {}, 'Backfills')), formSlot, list);

  // The form to start one: which deployment, which range, cut how.
  const today = new Date();
  const isoDay = (d) => d.toISOString().slice(0, 10);
  const deployment = h('select', { name: 'deployment', 'data-testid': 'backfill-deployment', required: true });
  const start = h('input', { type: 'date', name: 'start', required: true, value: isoDay(new Date(today.getTime() - 7 * DAY)), 'data-testid': 'backfill-start' });
  const end = h('input', { type: 'date', name: 'end', required: true, value: isoDay(today), 'data-testid': 'backfill-end' });
  const chunk = h('input', { type: 'text', name: 'chunk', placeholder: '7d', autocomplete: 'off', 'data-testid': 'backfill-chunk' });
  const maxActive = h('input', { type: 'number', name: 'max_active', min: '1', step: '1', value: '1', 'data-testid': 'backfill-max-active' });
  const rerun = h('input', { type: 'checkbox', name: 'rerun_failed', 'data-testid': 'backfill-rerun' });
  const fields = [
    field('deployment', 'Deployment', deployment),
    field('start', 'From (UTC day, included)', start),
    field('end', 'To (UTC day, not included)', end),
    field('chunk', 'Chunk', chunk, 'Empty: one run per scheduled interval.'),
    field('max_active', 'Max active', maxActive, 'Runs of this backfill at once.'),
    field('rerun_failed', 'Only intervals without a successful run', rerun),
  ];
  const general = h('p', { class: 'callout', role: 'alert', 'data-testid': 'form-error' });
  const shown = errors(fields, general);
  const submit = h('button', { type: 'submit', class: 'primary', 'data-testid': 'backfill-submit' }, 'Start backfill');
  const form = h('form', { class: 'panel inline-form', novalidate: true, 'data-testid': 'backfill-form', 'data-needs': 'operate', 'aria-labelledby': 'backfill-form-title' },
    h('h2', { id: 'backfill-form-title' }, 'New backfill'),
    h('div', { class: 'fields row' }, fields.map((f) => f.el)), general,
    h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    shown.clear();
    if (!deployment.value) { shown.show('deployment', 'Choose a deployment.'); return; }
    if (!start.value) { shown.show('start', 'Enter the first day.'); return; }
    if (!end.value) { shown.show('end', 'Enter the day after the last.'); return; }
    if (maxActive.validity.badInput) { shown.show('max_active', 'Enter a number.'); return; }
    const request = { start: `${start.value}T00:00:00Z`, end: `${end.value}T00:00:00Z`, rerun_failed: rerun.checked };
    if (chunk.value.trim()) request.chunk = chunk.value.trim();
    if (maxActive.value) request.max_active = Number(maxActive.value);
    submit.disabled = true;
    try {
      const created = await send('POST', `/api/deployments/${encodeURIComponent(deployment.value)}/backfills`, request);
      location.hash = `#/backfills/${created.id}`;
    } catch (error) {
      shown.show(error.field, error.message);
    } finally {
      submit.disabled = false;
    }
  });

  get('/api/deployments').then((deployments) => {
    if (stopped) return;
    if (!deployments.length) {
      formSlot.replaceChildren(h('p', { class: 'muted' }, 'Backfills run a deployment over a past range; none is registered yet.'));
      return;
    }
    deployment.replaceChildren(...deployments.map((d) =>
      h('option', { value: d.name, selected: d.name === params.deployment }, d.name)));
    formSlot.replaceChildren(form);
    if (params.deployment) start.focus();
  }).catch((error) => { if (!stopped) formSlot.replaceChildren(errorState(error)); });

  function row(b) {
    const open = (event) => {
      if (event.target.closest('a')) return;
      location.hash = `#/backfills/${b.id}`;
    };
    return h('tr', { class: 'link', 'data-testid': 'backfill-row', 'data-id': b.id, onclick: open },
      h('td', {}, h('a', { href: `#/backfills/${b.id}` }, b.deployment), h('div', { class: 'muted small mono' }, shortId(b.id))),
      h('td', {}, range(b)),
      h('td', {}, b.chunk || h('span', { class: 'muted' }, 'by schedule')),
      h('td', {}, progress(b.intervals)),
      h('td', {}, pill(b.status, COLORS[b.status] || 'Pending')),
      h('td', { title: time(b.created_at) }, relative(b.created_at)));
  }

  async function load() {
    try {
      const backfills = await get('/api/backfills');
      if (stopped) return;
      list.replaceChildren(backfills.length
        ? h('div', { class: 'panel flush scroll-x' }, h('table', { class: 'list' },
          h('thead', {}, h('tr', {}, ['Deployment', 'Range', 'Chunk', 'Progress', 'Status', 'Created'].map((t) => h('th', {}, t)))),
          h('tbody', {}, backfills.map(row))))
        : h('div', { class: 'panel empty', 'data-testid': 'empty' }, h('h2', {}, 'No backfills yet'),
          h('p', {}, 'Start one above, or from the command line.')));
    } catch (error) {
      if (!stopped) list.replaceChildren(errorState(error, load));
    }
  }

  load();
  const refresh = throttle(load, 2000);
  const stop = subscribe({ task_events: false }, (event) => {
    if (event?.kind?.type !== 'log') refresh();
  });
  return () => { stopped = true; stop(); };
}

const WEEKDAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/**
 * The intervals as cells in state colors: a calendar (a week a row) when each is a day, else a
 * grid in time order. Each cell opens the interval's latest run.
 */
function grid(intervals) {
  const length = (i) => Date.parse(i.end) - Date.parse(i.start);
  const daily = intervals.length > 0 && intervals.every((i) => Math.abs(length(i) - DAY) <= 3600e3);
  const cells = intervals.map((i, n) => {
    const at = new Date(i.start);
    const state = i.state || NOT_RUN;
    const label = daily
      ? (at.getUTCDate() === 1 || n === 0 ? `${MONTHS[at.getUTCMonth()]} ${at.getUTCDate()}` : String(at.getUTCDate()))
      : length(i) >= DAY ? `${day(i.start)} → ${day(i.end).slice(i.start.slice(0, 4) === i.end.slice(0, 4) ? 5 : 0)}`
        : `${day(i.start)} ${i.start.slice(11, 16)}`;
    const words = `${i.start} → ${i.end}: ${state}${i.runs > 1 ? `, ${i.runs} runs` : ''}`;
    const attrs = { class: 'bf-cell', style: { '--state': i.state ? stateColor(i.state) : 'transparent' }, 'data-state': state,
      'data-testid': 'interval', 'data-start': i.start, title: words, 'aria-label': words };
    return i.run ? h('a', { ...attrs, href: `#/runs/${i.run}` }, label) : h('span', attrs, label);
  });
  if (!daily) return h('div', { class: 'bf-grid', 'data-testid': 'backfill-grid' }, cells);
  const offset = (new Date(intervals[0].start).getUTCDay() + 6) % 7;
  return h('div', { class: 'bf-grid calendar', 'data-testid': 'backfill-grid' },
    WEEKDAYS.map((d) => h('span', { class: 'bf-weekday', 'aria-hidden': 'true' }, d)),
    Array.from({ length: offset }, () => h('span', { 'aria-hidden': 'true' })),
    cells);
}

export function backfillPage({ root, subscribe }, id) {
  let stopped = false;
  let view = null;
  const head = h('section', { class: 'panel', 'data-testid': 'backfill-head' }, h('div', { class: 'loading' }, 'Loading the backfill…'));
  const cells = h('section', { class: 'panel', 'data-testid': 'backfill-intervals' });
  const answer = h('span', { role: 'status', class: 'muted', 'data-testid': 'backfill-cancel-answer' });
  const cancel = h('button', { type: 'button', class: 'danger', 'data-testid': 'backfill-cancel', 'data-needs': 'operate' }, 'Cancel backfill');
  root.append(head, cells);

  cancel.addEventListener('click', async () => {
    cancel.disabled = true;
    try {
      view = await send('POST', `/api/backfills/${id}/cancel`);
      answer.textContent = 'Cancelled: its runs not yet started will not start; those running finish.';
      render();
    } catch (error) {
      answer.textContent = `Could not cancel: ${error.message}`;
    } finally {
      cancel.disabled = false;
    }
  });

  function render() {
    const b = view;
    cancel.hidden = b.status !== 'running';
    head.replaceChildren(
      h('div', { class: 'crumbs' }, h('a', { href: '#/backfills' }, 'Backfills'), ' / ', b.deployment),
      h('div', { class: 'page-head', style: { marginTop: '8px' } },
        h('h1', {}, 'Backfill of ', h('a', { href: `#/runs?q=${encodeURIComponent(b.deployment)}` }, b.deployment)),
        h('span', { 'data-testid': 'backfill-status' }, pill(b.status, COLORS[b.status] || 'Pending')),
        h('span', { class: 'spacer' }), cancel, answer),
      h('dl', { class: 'meta' }, [
        ['Range', range(b)],
        ['Intervals', String(b.intervals.length)],
        ['Cut', b.chunk ? `chunks of ${b.chunk}` : 'by schedule'],
        ['Max active', String(b.max_active)],
        ['Queue', b.queue || '—'],
        ['Created', time(b.created_at)],
      ].map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v)))));
    cells.replaceChildren(
      h('h2', {}, 'Intervals'),
      h('div', { class: 'legend', 'data-testid': 'backfill-counts' }, countsOf(b.intervals).map(([state, n]) =>
        h('span', { 'data-state': state, 'data-count': String(n) },
          h('i', { class: state === NOT_RUN ? 'none' : null, style: { '--state': state === NOT_RUN ? 'transparent' : stateColor(state) } }),
          `${state} ${n}`))),
      b.intervals.length ? grid(b.intervals) : h('p', { class: 'muted' }, 'Every interval of the range already had a successful run: nothing to do.'));
  }

  async function load() {
    try {
      const b = await get(`/api/backfills/${id}`);
      if (stopped) return;
      view = b;
      render();
    } catch (error) {
      if (stopped) return;
      if (view && error.status !== 404) return; // keep what is shown; the next tick retries
      head.replaceChildren(error.status === 404
        ? h('div', { class: 'empty', 'data-testid': 'not-found' }, h('h2', {}, 'No such backfill'),
          h('p', {}, `The server has no backfill ${id}. `, h('a', { href: '#/backfills' }, 'See all backfills'), '.'))
        : errorState(error, load));
    }
  }

  load();
  // While it runs its cells change: from events as they come, and every 2 s.
  const refresh = throttle(load, 500);
  const stop = subscribe({ task_events: false }, (event) => {
    if (event?.kind?.type !== 'log') refresh();
  });
  const timer = setInterval(() => { if (!view || view.status === 'running') load(); }, 2000);
  return () => { stopped = true; stop(); clearInterval(timer); };
}
