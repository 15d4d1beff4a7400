// One task run, on a page of its own (`#/runs/<flow run>/tasks/<task run>`): every attempt with
// its error, start, end and duration, its arguments (when recorded), its state history, tags,
// upstreams and dependents, logs.

import { get } from './api.js';
import { FAILED, attemptState, attemptsText, badge, duration, elapsed, errorState, h, paramText, shortId, taskLabels, taskUrl, throttle, time, toMs } from './dom.js';
import { logsPanel } from './logs.js';

/** The attempts of a run from its state changes: a `Running` to the state that follows it. */
export function attemptsOf(changes) {
  const attempts = [];
  let open = null;
  for (const c of changes) {
    if (c.state === 'Running') {
      open = { attempt: c.attempt, start: c.timestamp, end: null, state: 'Running', message: null };
      attempts.push(open);
    } else if (open && c.state !== 'Pending') {
      open.end = c.timestamp;
      open.state = attemptState(c.state, c.message);
      open.message = c.message;
      open = null;
    }
  }
  return attempts;
}

/** The markers the runtime records in place of an argument: over the size cap, or not serializable. */
const MARKER = /^<(truncated|not serializable): .*>$/s;

/**
 * The Arguments panel: a name/value table like a flow run's parameters, a marker (an argument
 * over the 16 KiB cap, or one that does not serialize) set apart; or why there are none.
 */
export function argumentsPanel(el, parameters) {
  const entries = parameters && typeof parameters === 'object' ? Object.entries(parameters) : [];
  el.replaceChildren(h('h2', {}, 'Arguments'), entries.length
    ? h('table', { class: 'kv', 'data-testid': 'arguments' }, entries.map(([k, v]) => {
      const marker = typeof v === 'string' && MARKER.test(v);
      return h('tr', { 'data-testid': 'argument', 'data-name': k },
        h('td', {}, k),
        h('td', {}, marker
          ? h('span', { class: 'marker', 'data-testid': 'argument-marker' }, v)
          : h('pre', {}, paramText(v))));
    }))
    : h('p', { class: 'muted', 'data-testid': 'no-arguments' }, parameters
      ? 'This task takes no arguments.'
      : 'Not recorded: add record_arguments = true to the task (or to its flow) to record them.'));
}

/** Where a persisted result is: the store, the key, and the pack holding it, if any. */
function resultLocation(result) {
  const where = `${result.store.replace(/\/+$/, '')}/${result.packed_in || result.key}`;
  return h('span', { 'data-testid': 'task-result' },
    h('span', { class: 'mono', style: { wordBreak: 'break-all' }, title: 'Where the result is stored' }, where),
    result.packed_in ? h('span', { class: 'muted' }, ` (record ${result.key.split('/').pop()})`) : null);
}

export function taskPage({ root, subscribe }, flowRunId, taskRunId) {
  let stopped = false;
  let loaded = false;
  const names = new Map();
  const nameOf = (id) => names.get(id) || shortId(id);

  const head = h('section', { class: 'panel', 'data-testid': 'task-head' }, h('div', { class: 'loading' }, 'Loading the task run…'));
  const problem = h('div');
  const attemptsPanel = h('section', { class: 'panel flush', 'data-testid': 'task-attempts-panel' });
  const args = h('section', { class: 'panel', 'data-testid': 'task-arguments' });
  const relations = h('section', { class: 'panel', 'data-testid': 'task-relations' });
  const history = h('section', { class: 'panel', 'data-testid': 'task-history' });
  const logs = logsPanel(flowRunId, nameOf, { task: taskRunId });
  root.append(head, problem, attemptsPanel, h('div', { class: 'columns' }, args, relations), history, logs.el);

  const links = (ids) => (ids.length
    ? ids.slice(0, 50).map((u, i) => [i ? ', ' : '', h('a', { href: taskUrl(flowRunId, u) }, nameOf(u))])
    : '—');

  function render(flow, task, changes) {
    const all = flow.task_runs;
    taskLabels(all, names);
    const dependents = all.filter((r) => r.upstream.includes(task.id)).map((r) => r.id);
    const attempts = attemptsOf(changes);
    const meta = [
      ['Task run id', h('span', { class: 'mono run-id' }, task.id)],
      ['Started', time(task.start)],
      ['Ended', time(task.end)],
      ['Duration', duration(elapsed(task))],
      ['Attempts', h('span', { 'data-testid': 'task-attempts' }, attemptsText(task))],
      ['Tags', task.tags.length ? task.tags.map((t) => h('span', { class: 'tag' }, t)) : '—'],
    ];
    if (task.map_index != null) meta.push(['Map index', String(task.map_index)]);
    if (task.result) meta.push(['Result', resultLocation(task.result), { style: { gridColumn: '1 / -1' } }]);
    head.replaceChildren(
      h('div', { class: 'crumbs' }, h('a', { href: '#/runs' }, 'Runs'), ' / ',
        h('a', { href: `#/runs/${flowRunId}`, 'data-testid': 'task-flow-link' }, `${flow.name}${flow.run_name ? ` · ${flow.run_name}` : ''}`), ' / task run'),
      h('div', { class: 'page-head', style: { marginTop: '8px' } },
        h('h1', { 'data-testid': 'task-name' }, nameOf(task.id)), badge(task.state, true)),
      h('dl', { class: 'meta' }, meta.map(([k, v, attrs]) => h('div', attrs || {}, h('dt', {}, k), h('dd', {}, v)))));
    const failed = FAILED.includes(task.state) || task.state === 'Cancelled' || task.state === 'Skipped';
    problem.replaceChildren(failed && task.message
      ? h('div', { class: 'callout', 'data-testid': 'task-error' }, h('strong', {}, `This task run ended ${task.state}.`), h('pre', {}, task.message))
      : '');
    attemptsPanel.replaceChildren(h('div', { style: { padding: '16px 16px 0' } }, h('h2', {}, 'Attempts')),
      attempts.length
        ? h('table', { class: 'list', 'data-testid': 'attempts' },
          h('thead', {}, h('tr', {}, ['Attempt', 'Outcome', 'Started', 'Ended', 'Duration', 'Error'].map((c) => h('th', {}, c)))),
          h('tbody', {}, attempts.map((a) => h('tr', { 'data-testid': 'attempt', 'data-state': a.state },
            h('td', { 'data-label': 'Attempt' }, `#${a.attempt}`),
            h('td', { 'data-label': 'Outcome' }, badge(a.state)),
            h('td', { 'data-label': 'Started' }, time(a.start)),
            h('td', { 'data-label': 'Ended' }, time(a.end)),
            h('td', { 'data-label': 'Duration', class: 'num' }, duration(a.end ? toMs(a.end) - toMs(a.start) : Date.now() - toMs(a.start))),
            h('td', { 'data-label': 'Error', class: 'attempt-error' }, a.message
              ? h('span', { class: 'error-text' }, a.message)
              : '—')))))
        : h('p', { class: 'muted', style: { padding: '0 16px 16px' } }, task.state === 'Pending' ? 'Not started yet.' : 'It never ran.'));
    relations.replaceChildren(h('h2', {}, 'Dependencies'),
      h('dl', { class: 'meta', style: { marginTop: 0 } },
        h('div', {}, h('dt', {}, 'Waits for'), h('dd', { 'data-testid': 'upstreams' }, links(task.upstream))),
        h('div', {}, h('dt', {}, 'Needed by'), h('dd', { 'data-testid': 'dependents' }, links(dependents)))));
    history.replaceChildren(h('h2', {}, 'State history'), changes.length
      ? h('ol', { class: 'history' }, changes.map((c) => h('li', {}, h('time', {}, time(c.timestamp)), badge(c.state),
        c.attempt > 1 ? h('span', { class: 'muted' }, `attempt ${c.attempt}`) : null, c.message ? h('span', { class: 'muted' }, c.message) : null)))
      : h('p', { class: 'muted' }, 'No state changes recorded yet.'));
  }

  async function load() {
    try {
      const [flow, changes, own] = await Promise.all([
        get(`/api/flow_runs/${flowRunId}`),
        get(`/api/flow_runs/${flowRunId}/states`, { task_run_id: taskRunId }),
        // Its arguments come with it alone (the flow run's list leaves them out).
        get(`/api/flow_runs/${flowRunId}/task_runs/${taskRunId}`),
      ]);
      if (stopped) return;
      const task = flow.task_runs.find((t) => t.id === taskRunId);
      if (!task) throw Object.assign(new Error('no such task run'), { status: 404 });
      render(flow, task, changes);
      argumentsPanel(args, own.parameters);
      if (!loaded) { loaded = true; logs.reload(); performance.mark('flowkit:task-rendered'); }
      return task;
    } catch (error) {
      if (stopped) return;
      if (error.status === 404) {
        for (const el of root.children) if (el !== head) el.hidden = true;
        head.replaceChildren(h('div', { class: 'empty', 'data-testid': 'not-found' }, h('h2', {}, 'No such task run'),
          h('p', {}, `The server has no task run ${taskRunId} in flow run ${flowRunId}. `, h('a', { href: '#/runs' }, 'See all runs'), '.')));
      } else if (!loaded) {
        head.replaceChildren(errorState(error, load));
      }
    }
  }

  const refresh = throttle(load, 1000);
  load();
  const stop = subscribe({ flow_run_id: flowRunId }, (event) => {
    if (!event) { refresh(); logs.reload(); return; }
    if (event.task_run_id !== taskRunId) return;
    if (event.kind?.type === 'log') logs.push(event);
    else refresh();
  });
  return () => { stopped = true; stop(); };
}

