// The runs page: flow runs newest first, filtered and searched, kept current by live events.

import { get } from './api.js';
import { FAILED, STATES, badge, duration, elapsed, errorState, h, isLate, lateTag, openRow, paramSummary, relative, shortId, snippet, taskBar, throttle, time } from './dom.js';

const RANGES = { '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3, '30d': 30 * 86400e3 };
const PAGE = 50;

export function runsPage({ root, params, subscribe }) {
  const filters = { q: params.q || '', flow: params.flow || '', state: params.state || '', range: params.range || '', failed_tasks: params.failed_tasks === 'true' ? 'true' : '' };
  let items = [];
  let cursor = null;
  let stopped = false;

  const search = h('input', { type: 'search', placeholder: 'Search run names, flows, parameters, tags or a run id', value: filters.q, 'aria-label': 'Search', 'data-testid': 'search' });
  const flowSelect = h('select', { 'aria-label': 'Flow', 'data-testid': 'flow-filter' }, h('option', { value: '' }, 'All flows'));
  // One state, or any of several (`Failed,Crashed,TimedOut`, or what the URL names).
  const anyFailure = FAILED.join(',');
  const stateSelect = h('select', { 'aria-label': 'State', 'data-testid': 'state-filter' },
    h('option', { value: '' }, 'All states'),
    h('option', { value: anyFailure, selected: filters.state === anyFailure }, 'Failed, crashed or timed out'),
    filters.state.includes(',') && filters.state !== anyFailure ? h('option', { value: filters.state, selected: true }, filters.state.split(',').join(' or ')) : null,
    STATES.map((s) => h('option', { value: s, selected: s === filters.state }, s)));
  const failedTasks = h('input', { type: 'checkbox', 'data-testid': 'failed-tasks-filter', checked: filters.failed_tasks === 'true' });
  const failedTasksLabel = h('label', { class: 'check-filter' }, failedTasks, 'With failed tasks');
  const rangeSelect = h('select', { 'aria-label': 'Time range', 'data-testid': 'range-filter' },
    h('option', { value: '' }, 'All time'),
    Object.keys(RANGES).map((r) => h('option', { value: r, selected: r === filters.range }, `Last ${r}`)));
  const body = h('div', { class: 'panel flush', 'data-testid': 'runs' }, h('div', { class: 'loading' }, 'Loading runs…'));
  root.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Flow runs'), h('span', { class: 'spacer' })),
    h('div', { class: 'filters' }, search, flowSelect, stateSelect, rangeSelect, failedTasksLabel),
    body,
  );

  get('/api/flows').then((flows) => {
    for (const f of flows) flowSelect.append(h('option', { value: f.name, selected: f.name === filters.flow }, f.name));
  }).catch(() => {});

  function apiParams(limit) {
    return {
      q: filters.q.trim(),
      flow: filters.flow,
      state: filters.state,
      since: filters.range ? new Date(Date.now() - RANGES[filters.range]).toISOString() : '',
      failed_tasks: filters.failed_tasks,
      limit,
    };
  }

  function syncHash() {
    const q = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
    const hash = `#/runs${q.toString() ? `?${q}` : ''}`;
    if (location.hash !== hash) history.replaceState(null, '', hash);
  }

  function row(run, fresh, now) {
    // A run the server made ahead, not started: when it is due, and whether it is late.
    const upcoming = run.state === 'Scheduled' && !run.start && run.scheduled;
    const late = upcoming && isLate(run.state, run.scheduled, now);
    const classes = ['link', fresh ? 'fresh' : null, upcoming ? 'upcoming' : null, late ? 'is-late' : null].filter(Boolean).join(' ');
    const when = upcoming ? run.scheduled : run.start || run.created;
    const due = relative(run.scheduled);
    const failed = FAILED.includes(run.state) && run.message;
    const params = paramSummary(run.parameters);
    return h('tr', { class: classes, 'data-run-id': run.id, 'data-testid': 'run-row', 'data-upcoming': upcoming ? (late ? 'late' : 'due') : null,
      onclick: (event) => openRow(event, run.id) },
      h('td', { class: 'c-state' }, badge(run.state)),
      h('td', { class: 'c-flow' }, h('a', { href: `#/runs/${run.id}` }, run.name || '(unnamed)'), deployment(run),
        run.parent_flow_run_id ? h('div', { class: 'muted small', 'data-testid': 'child-of' }, '↳ child of ',
          h('a', { href: `#/runs/${run.parent_flow_run_id}` }, shortId(run.parent_flow_run_id))) : null,
        failed ? h('div', { class: 'small error-text snippet', 'data-testid': 'error-snippet', title: run.message }, snippet(run.message)) : null),
      h('td', { class: 'c-run' }, h('div', { 'data-testid': 'run-name' }, run.run_name || shortId(run.id)),
        h('div', { class: 'mono muted small' }, shortId(run.id)),
        params ? h('div', { class: 'muted small params', 'data-testid': 'params', title: params }, params) : null),
      h('td', { class: 'c-tasks' }, upcoming ? '—' : taskBar(run.task_counts)),
      h('td', { class: 'c-when', title: when || '' }, time(when), h('div', { class: 'muted small' },
        late ? [lateTag(run.scheduled), ` due ${due}`]
          : upcoming ? h('span', { 'data-testid': 'upcoming' }, due === 'just now' ? 'due now' : `upcoming · ${due}`)
            : relative(when))),
      h('td', { class: 'num c-duration' }, upcoming ? '—' : duration(elapsed(run))),
      h('td', { class: 'c-tags' }, run.tags.map((t) => h('span', { class: 'tag' }, t))));
  }

  /** Which deployment started the run, and the day its data interval starts (Airflow's `ds`). */
  function deployment(run) {
    if (!run.deployment) return null;
    const day = (run.interval_start || run.scheduled || '').slice(0, 10);
    return h('div', { class: 'muted small', 'data-testid': 'deployment' },
      `${run.deployment}${day ? ` · for ${day}` : ''}`);
  }

  function render(previous = new Set()) {
    if (!items.length) {
      const filtered = Object.values(filters).some(Boolean);
      body.replaceChildren(filtered
        ? h('div', { class: 'empty', 'data-testid': 'empty' }, h('h2', {}, 'No runs match these filters'),
          h('p', {}, 'Widen the time range or ', h('a', { href: '#/runs', onclick: clear }, 'clear the filters'), '.'))
        : h('div', { class: 'empty', 'data-testid': 'empty' }, h('h2', {}, 'No flow runs yet'),
          h('p', {}, 'Point a flowkit program at this server and its runs appear here as they happen:'),
          h('pre', {}, `FLOWKIT_API_URL=${location.origin} cargo run --example daily_etl`)));
      return;
    }
    const now = Date.now();
    const table = h('table', { class: 'list' },
      h('thead', {}, h('tr', {}, ['State', 'Flow', 'Run', 'Tasks', 'Started / due', 'Duration', 'Tags'].map((c) => h('th', { class: c === 'Duration' ? 'num' : null }, c)))),
      h('tbody', {}, items.map((run) => row(run, previous.size > 0 && !previous.has(run.id), now))));
    body.replaceChildren(table);
    if (cursor) body.append(h('div', { class: 'more' }, h('button', { type: 'button', onclick: more, 'data-testid': 'more' }, 'Load more')));
  }

  function clear(event) {
    event?.preventDefault();
    Object.assign(filters, { q: '', flow: '', state: '', range: '', failed_tasks: '' });
    search.value = ''; flowSelect.value = ''; stateSelect.value = ''; rangeSelect.value = ''; failedTasks.checked = false;
    reload();
  }

  // Answers to older requests (filters since changed) are dropped.
  let generation = 0;

  async function reload() {
    if (stopped) return;
    syncHash();
    const mine = ++generation;
    try {
      const page = await get('/api/flow_runs', apiParams(PAGE));
      if (stopped || mine !== generation) return;
      items = page.items;
      cursor = page.next_cursor || null;
      render();
      if (!performance.getEntriesByName('flowkit:runs-rendered').length) performance.mark('flowkit:runs-rendered');
    } catch (error) {
      if (!stopped && mine === generation) body.replaceChildren(errorState(error, reload));
    }
  }

  async function more() {
    const mine = ++generation;
    try {
      const page = await get('/api/flow_runs', { ...apiParams(PAGE), cursor });
      if (stopped || mine !== generation) return;
      items = items.concat(page.items);
      cursor = page.next_cursor || null;
      render();
    } catch (error) {
      body.append(errorState(error, more));
    }
  }

  // Live: refresh what is shown (at least a page), marking the runs that are new.
  const refresh = throttle(async () => {
    if (stopped) return;
    const mine = generation;
    try {
      const page = await get('/api/flow_runs', apiParams(Math.min(1000, Math.max(PAGE, items.length))));
      if (stopped || mine !== generation) return;
      const previous = new Set(items.map((r) => r.id));
      items = page.items;
      cursor = page.next_cursor || null;
      render(previous);
    } catch { /* the next event tries again */ }
  }, 500);

  let typing = null;
  search.addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(() => { filters.q = search.value; reload(); }, 250);
  });
  flowSelect.addEventListener('change', () => { filters.flow = flowSelect.value; reload(); });
  stateSelect.addEventListener('change', () => { filters.state = stateSelect.value; reload(); });
  rangeSelect.addEventListener('change', () => { filters.range = rangeSelect.value; reload(); });
  failedTasks.addEventListener('change', () => { filters.failed_tasks = failedTasks.checked ? 'true' : ''; reload(); });

  reload();
  const stop = subscribe({ task_events: false }, (event) => {
    if (event?.kind?.type !== 'log') refresh();
  });
  const tick = setInterval(() => { if (items.some((r) => !r.end)) render(); }, 5000);
  return () => { stopped = true; stop(); clearInterval(tick); clearTimeout(typing); };
}
