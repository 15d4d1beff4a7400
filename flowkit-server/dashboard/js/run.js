// One flow run: what it was given, how it went, its task runs on a timeline, its logs.

import { get, send } from './api.js';
import { FAILED, STATES, TERMINAL, attemptsText, badge, duration, elapsed, errorState, h, isLate, lateTag, openRow, paramText, shortId, taskLabels, taskUrl, throttle, time, toMs } from './dom.js';
import { logsPanel } from './logs.js';
import { auditPanel } from './audit.js';
import { segmentsOf, timeline } from './timeline.js';

/** The states a flow run can be retried from (`POST /api/flow_runs/{id}/retry`). */
const RETRYABLE = new Set(['Failed', 'Crashed', 'Cancelled', 'TimedOut']);

export function runPage({ root, subscribe }, id) {
  let detail = null;
  let changes = [];
  let stopped = false;
  let rendered = false;
  let selected = null;
  const hidden = new Set();
  let nameFilter = '';

  const names = new Map();
  const nameOf = (taskRunId) => names.get(taskRunId) || shortId(taskRunId);

  const head = h('section', { class: 'panel', 'data-testid': 'run-head' }, h('div', { class: 'loading' }, 'Loading the run…'));
  const problem = h('div');
  const params = h('section', { class: 'panel' });
  const history = h('section', { class: 'panel', 'data-testid': 'state-history' });
  const chipGroup = h('span', { class: 'timeline-tools', style: { margin: 0 } });
  const taskSearch = h('input', { type: 'search', placeholder: 'Filter tasks by name', 'aria-label': 'Filter tasks', 'data-testid': 'task-filter' });
  const chips = h('div', { class: 'timeline-tools' }, taskSearch, chipGroup);
  let lastRows = [];
  const taskDetail = h('div', { class: 'task-detail', 'data-testid': 'task-detail' });
  const tl = timeline({ onSelect: (row) => (row.child ? (location.hash = `#/runs/${row.id}`) : choose(row.id)) });
  const tasks = h('section', { class: 'panel', 'data-testid': 'tasks' }, h('h2', {}, 'Task runs'), chips, tl.el, taskDetail);
  const children = h('section', { class: 'panel flush', 'data-testid': 'child-runs' });
  const logs = logsPanel(id, nameOf);
  root.append(head, problem, h('div', { class: 'columns' }, params, history), tasks, children, logs.el, auditPanel({ run: id }).el);

  // Cancel: asked once more before it is sent; the server's answer stays shown.
  const cancelAnswer = h('span', { role: 'status', class: 'muted', 'data-testid': 'cancel-answer' });
  const cancelButton = h('button', { type: 'button', class: 'danger', 'data-testid': 'cancel-run' }, 'Cancel run');
  const confirmButton = h('button', { type: 'button', class: 'danger', 'data-testid': 'cancel-confirm' }, 'Yes, cancel it');
  const keepButton = h('button', { type: 'button', 'data-testid': 'cancel-keep' }, 'Keep it');
  const confirm = h('span', { class: 'confirm', role: 'group', 'aria-label': 'Cancel this run?' },
    h('span', {}, 'Cancel this run?'), confirmButton, keepButton);
  confirm.hidden = true;
  // Retry from failure: a worker of the run's deployment runs it again as a new attempt; the
  // task runs that completed return their stored results (shown Cached).
  const retryButton = h('button', { type: 'button', 'data-testid': 'retry-run', title: 'Run it again as a new attempt: tasks that completed reuse their results' }, 'Retry from failure');
  const retryAnswer = h('span', { role: 'status', class: 'muted', 'data-testid': 'retry-answer' });
  retryButton.hidden = true;
  const actions = h('div', { class: 'run-actions', 'data-needs': 'operate' }, cancelButton, confirm, cancelAnswer, retryButton, retryAnswer);
  retryButton.addEventListener('click', async () => {
    retryButton.disabled = true;
    retryAnswer.textContent = 'Asking for a retry…';
    try {
      const answer = await send('POST', `/api/flow_runs/${id}/retry`);
      retryAnswer.textContent = `Retrying: attempt ${answer.attempt} is ${answer.state} for a worker of ${answer.deployment}.`;
      delete cancelAnswer.dataset.state;
      cancelAnswer.textContent = '';
      refresh();
    } catch (error) {
      retryAnswer.textContent = `Could not retry: ${error.message}`;
    } finally {
      retryButton.disabled = false;
    }
  });
  cancelButton.addEventListener('click', () => {
    cancelButton.hidden = true;
    confirm.hidden = false;
    confirmButton.focus();
  });
  keepButton.addEventListener('click', () => {
    confirm.hidden = true;
    cancelButton.hidden = false;
    cancelButton.focus();
  });
  confirmButton.addEventListener('click', async () => {
    confirmButton.disabled = true;
    cancelAnswer.textContent = 'Cancelling…';
    try {
      const answer = await send('POST', `/api/flow_runs/${id}/cancel`);
      cancelAnswer.dataset.state = answer.state;
      cancelAnswer.textContent = answer.state === 'Cancelled' ? 'Cancelled.'
        : answer.state === 'Cancelling' ? 'Cancelling: the program running it was asked to stop.'
          : `Nothing to cancel: the run had already ended ${answer.state}.`;
      confirm.hidden = true;
      refresh();
    } catch (error) {
      cancelAnswer.textContent = `Could not cancel: ${error.message}`;
      confirm.hidden = true;
      cancelButton.hidden = false;
    } finally {
      confirmButton.disabled = false;
    }
  });

  /** Only a run that has not ended can be cancelled; one of a deployment that ended badly can be retried. */
  function renderActions(run) {
    const open = !TERMINAL.has(run.state);
    if (!open) { cancelButton.hidden = true; confirm.hidden = true; }
    else if (confirm.hidden && !cancelAnswer.dataset.state) cancelButton.hidden = false;
    const retryable = RETRYABLE.has(run.state) && !!run.deployment && !run.parent_flow_run_id;
    retryButton.hidden = !retryable;
    actions.hidden = !open && !retryable && !cancelAnswer.textContent && !retryAnswer.textContent;
  }

  function renderHead(run) {
    const meta = [
      ['Run id', h('span', { class: 'mono run-id' }, run.id)],
      ['Started', time(run.start)],
      ['Ended', time(run.end)],
      ['Duration', duration(elapsed(run))],
      ['Attempts', String(run.attempts || 0)],
      ['Tags', run.tags.length ? run.tags.map((t) => h('span', { class: 'tag' }, t)) : '—'],
    ];
    if (run.deployment) {
      meta.push(['Deployment', h('a', { href: `#/runs?q=${encodeURIComponent(run.deployment)}`, 'data-testid': 'run-deployment' }, run.deployment)]);
      meta.push(['Scheduled for', h('span', {}, time(run.scheduled), isLate(run.state, run.scheduled) && !run.start ? [' ', lateTag(run.scheduled)] : null)]);
      if (run.interval_start) meta.push(['Data interval', h('span', { 'data-testid': 'run-interval' }, `${run.interval_start} → ${run.interval_end || '—'}`)]);
    }
    if (run.origin) meta.push(['Made by', h('span', { 'data-testid': 'run-origin' }, run.origin)]);
    if (run.worker) meta.push(['Worker', h('a', { href: '#/workers', 'data-testid': 'run-worker' }, run.worker)]);
    if (run.parent_flow_run_id) meta.push(['Parent flow run', h('a', { href: `#/runs/${run.parent_flow_run_id}` }, shortId(run.parent_flow_run_id))]);
    renderActions(run);
    head.replaceChildren(
      h('div', { class: 'crumbs' }, h('a', { href: '#/runs' }, 'Runs'), ' / ', h('a', { href: `#/runs?flow=${encodeURIComponent(run.name || '')}` }, run.name)),
      h('div', { class: 'page-head', style: { marginTop: '8px' } }, h('h1', { 'data-testid': 'run-name' }, run.name || '(unnamed)'),
        run.run_name ? h('span', { class: 'run-title', 'data-testid': 'run-title' }, run.run_name) : null, badge(run.state, true),
        h('span', { class: 'spacer' }), actions),
      h('dl', { class: 'meta' }, meta.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v)))));
    const failed = run.message && !['Completed', 'Cached', 'Running', 'Pending'].includes(run.state);
    const culprit = failed ? causingTask(run) : null;
    problem.replaceChildren(failed
      ? h('div', { class: 'callout', 'data-testid': 'run-error' }, h('strong', {}, `This run ended ${run.state}.`),
        culprit ? [' Caused by task run ', h('a', { href: taskUrl(id, culprit.id), 'data-testid': 'culprit' }, nameOf(culprit.id)), '.'] : null,
        h('pre', {}, run.message))
      : '');
  }

  /** The task run whose failure ended the flow run: the one its error names, else the last that failed. */
  function causingTask(run) {
    const failedTasks = detail.task_runs.filter((t) => FAILED.includes(t.state));
    if (!failedTasks.length) return null;
    return failedTasks.find((t) => run.message.includes(t.id))
      || failedTasks.find((t) => t.message && run.message.includes(t.message))
      || failedTasks.reduce((a, b) => ((b.end || '') > (a.end || '') ? b : a));
  }

  function renderParams(run) {
    const entries = run.parameters && typeof run.parameters === 'object' ? Object.entries(run.parameters) : [];
    params.replaceChildren(h('h2', {}, 'Parameters'), entries.length
      ? h('table', { class: 'kv', 'data-testid': 'parameters' }, entries.map(([k, v]) =>
        h('tr', {}, h('td', {}, k), h('td', {}, h('pre', {}, paramText(v))))))
      : h('p', { class: 'muted' }, 'This flow takes no parameters.'));
  }

  function renderHistory(run) {
    const own = changes.filter((c) => c.run_id === run.id);
    history.replaceChildren(h('h2', {}, 'State history'), own.length
      ? h('ol', { class: 'history' }, own.map((c) => h('li', {}, h('time', {}, time(c.timestamp)), badge(c.state),
        c.attempt > 1 ? h('span', { class: 'muted' }, `attempt ${c.attempt}`) : null, c.message ? h('span', { class: 'muted' }, c.message) : null)))
      : h('p', { class: 'muted' }, 'No state changes recorded yet.'));
  }

  function rowsOf(run, now) {
    const byRun = new Map();
    for (const c of changes) {
      if (c.run_id === run.id) continue;
      let list = byRun.get(c.run_id);
      if (!list) byRun.set(c.run_id, (list = []));
      list.push(c);
    }
    const rows = detail.task_runs.map((t) => ({
      id: t.id,
      state: t.state,
      label: nameOf(t.id),
      segments: segmentsOf(t, byRun.get(t.id), now),
      upstream: t.upstream,
      run: t,
    }));
    // Child flow runs are rows too, after the task runs; selecting one opens its page.
    for (const c of detail.child_flow_runs) {
      rows.push({ id: c.id, state: c.state, label: `↳ ${c.name}`, segments: segmentsOf(c, null, now), upstream: c.upstream || [], run: c, child: true });
    }
    // In creation order (as the API lists them), so rows stay put as task runs start.
    return rows;
  }

  function renderTasks() {
    const run = detail.run;
    const now = Date.now();
    const all = rowsOf(run, now);
    const counts = new Map();
    for (const r of all) counts.set(r.state, (counts.get(r.state) || 0) + 1);
    lastRows = all;
    chipGroup.replaceChildren(...STATES.filter((st) => counts.has(st)).map((st) => {
      const chip = h('button', { type: 'button', class: 'chip', 'aria-pressed': String(!hidden.has(st)), style: { '--state': `var(--state-${st})` }, 'data-testid': 'state-chip' },
        h('span', { class: 'swatch' }), `${st} ${counts.get(st).toLocaleString()}`);
      chip.addEventListener('click', () => { hidden.has(st) ? hidden.delete(st) : hidden.add(st); renderTasks(); });
      return chip;
    }));
    if (!all.length) {
      tl.el.hidden = true;
      chips.hidden = true;
      const ended = TERMINAL.has(run.state);
      const children = detail.child_flow_runs.length > 0;
      taskDetail.replaceChildren(h('p', { class: 'muted', 'data-testid': 'no-tasks' },
        !ended ? 'No task runs yet: they appear here as the flow calls them.'
          : children ? 'This flow run called no tasks itself; its child flow runs are below.'
            : 'This flow run called no tasks.'));
      return;
    }
    tl.el.hidden = false;
    chips.hidden = false;
    renderTimeline(all, run, now);
    if (selected) renderTaskDetail();
  }

  function renderTimeline(all, run, now) {
    const needle = nameFilter.trim().toLowerCase();
    const rows = all.filter((r) => !hidden.has(r.state) && (!needle || r.label.toLowerCase().includes(needle)));
    const t = (iso) => (iso ? toMs(iso) : null);
    let t0 = t(run.start) ?? t(run.created) ?? now;
    let t1 = t(run.end) ?? now;
    for (const r of all) for (const seg of r.segments) { t0 = Math.min(t0, seg.from); t1 = Math.max(t1, seg.to); }
    tl.set(rows, [t0, t1]);
  }

  taskSearch.addEventListener('input', () => {
    nameFilter = taskSearch.value;
    if (detail) renderTimeline(lastRows, detail.run, Date.now());
  });

  function choose(taskRunId) {
    selected = taskRunId;
    tl.select(taskRunId);
    renderTaskDetail();
    logs.setTask(taskRunId);
  }

  function renderTaskDetail() {
    const t = detail.task_runs.find((r) => r.id === selected);
    if (!t) { taskDetail.replaceChildren(); return; }
    const link = (upId) => h('a', { href: '#', onclick: (e) => { e.preventDefault(); choose(upId); } }, nameOf(upId));
    const downstream = detail.task_runs.filter((r) => r.upstream.includes(t.id)).map((r) => r.id);
    taskDetail.replaceChildren(h('div', { class: 'panel', style: { background: 'var(--panel-2)' } },
      h('div', { class: 'page-head' }, h('strong', {}, nameOf(t.id)), badge(t.state), h('span', { class: 'muted mono' }, shortId(t.id)),
        h('span', { class: 'spacer' }), h('a', { href: taskUrl(id, t.id), 'data-testid': 'task-page-link' }, 'Open the task run’s page →')),
      h('dl', { class: 'meta' },
        h('div', {}, h('dt', {}, 'Started'), h('dd', {}, time(t.start))),
        h('div', {}, h('dt', {}, 'Duration'), h('dd', {}, duration(elapsed(t)))),
        h('div', {}, h('dt', {}, 'Attempts'), h('dd', { 'data-testid': 'task-attempts' }, attemptsText(t))),
        h('div', {}, h('dt', {}, 'Waits for'), h('dd', {}, t.upstream.length ? t.upstream.slice(0, 20).map((u, i) => [i ? ', ' : '', link(u)]) : '—')),
        h('div', {}, h('dt', {}, 'Needed by'), h('dd', {}, downstream.length ? downstream.slice(0, 20).map((u, i) => [i ? ', ' : '', link(u)]) : '—'))),
      t.message && t.state !== 'Completed' ? h('div', { class: 'callout', style: { marginTop: '12px' } }, h('pre', { style: { margin: 0 } }, t.message)) : null));
  }

  function renderChildren() {
    const list = detail.child_flow_runs;
    children.hidden = !list.length;
    if (!list.length) return;
    children.replaceChildren(h('div', { style: { padding: '16px 16px 0' } }, h('h2', {}, 'Child flow runs')),
      h('table', { class: 'list' },
        h('thead', {}, h('tr', {}, ['State', 'Flow', 'Run', 'Started', 'Duration'].map((c) => h('th', { class: c === 'Duration' ? 'num' : null }, c)))),
        h('tbody', {}, list.map((r) => h('tr', { class: 'link', onclick: (event) => openRow(event, r.id) },
          h('td', {}, badge(r.state)), h('td', {}, h('a', { href: `#/runs/${r.id}` }, r.name)), h('td', { class: 'mono muted' }, shortId(r.id)),
          h('td', {}, time(r.start)), h('td', { class: 'num' }, duration(elapsed(r))))))));
  }

  function render() {
    const run = detail.run;
    // Labels as the console prints them: `name [i]` for a mapped run, `name#n` for the n-th
    // call of a task called more than once (as the console labels them).
    taskLabels(detail.task_runs, names);
    renderHead(run);
    renderParams(run);
    renderHistory(run);
    renderTasks();
    renderChildren();
    if (!rendered) {
      rendered = true;
      logs.reload();
      performance.mark('flowkit:run-rendered');
    }
  }

  // Loads may overlap while a run is live: an answer older than the one shown is dropped.
  let sent = 0;
  let shown = 0;
  // Events that arrived while a load was in flight: applied again on top of its answer.
  let inFlight = 0;
  let sinceLoad = [];
  let tasksById = new Map();
  let changeKeys = new Set();
  const keyOf = (c) => `${c.run_id} ${c.state} ${c.attempt} ${c.timestamp}`;

  async function load() {
    const mine = ++sent;
    inFlight += 1;
    if (inFlight === 1) sinceLoad = [];
    try {
      const [d, c] = await Promise.all([
        get(`/api/flow_runs/${id}`),
        get(`/api/flow_runs/${id}/states`, { retried_only: true }),
      ]);
      if (stopped || mine < shown) return;
      shown = mine;
      const { task_runs, child_flow_runs, ...run } = d;
      detail = { run, task_runs, child_flow_runs };
      tasksById = new Map(task_runs.map((t) => [t.id, t]));
      changes = c;
      changeKeys = new Set(c.map(keyOf));
      for (const event of sinceLoad) apply(event);
      render();
    } catch (error) {
      if (stopped || mine < shown) return;
      if (detail && error.status !== 404) return; // keep what is shown; the next event retries
      if (error.status === 404) {
        // Only the message: no empty panels beneath it.
        for (const el of root.children) if (el !== head) el.hidden = true;
        head.replaceChildren(h('div', { class: 'empty', 'data-testid': 'not-found' }, h('h2', {}, 'No such flow run'),
          h('p', {}, `The server has no flow run ${id}. It may have been removed by retention. `, h('a', { href: '#/runs' }, 'See all runs'), '.')));
      } else {
        head.replaceChildren(errorState(error, load));
      }
    } finally {
      inFlight -= 1;
    }
  }

  /** A state change merged into a run by the server's rule: a terminal state beats any other,
   * then the later attempt, then the later time. */
  function mergeState(r, change, at) {
    const ms = toMs(at);
    const final = TERMINAL.has(change.state);
    const wasFinal = TERMINAL.has(r.state);
    const wins = (final && !wasFinal) || (final === wasFinal &&
      (change.attempt > r.attempts || (change.attempt === r.attempts && ms >= (r.stateAt ?? 0))));
    if (wins) {
      r.state = change.state;
      r.message = change.message ?? null;
      r.stateAt = ms;
    }
    r.attempts = Math.max(r.attempts, change.attempt);
    if (change.state === 'Running' && (!r.start || ms < toMs(r.start))) r.start = at;
    if (final && (!r.end || ms > toMs(r.end))) r.end = at;
    if (r.start && r.end) r.duration_ms = toMs(r.end) - toMs(r.start);
  }

  /**
   * Applies a live event to the run shown, so a busy run is not fetched again for each event.
   * Returns false when the event needs a full load (a state change of a run not seen yet).
   */
  function apply(event) {
    const kind = event.kind;
    if (!detail || !kind) return true;
    const runId = event.task_run_id || id;
    if (kind.type === 'run_created') {
      if (event.task_run_id && !tasksById.has(runId)) {
        const t = {
          id: runId, run_type: 'task', name: kind.name, flow_run_id: id, parent_flow_run_id: null,
          parent_task_run_id: kind.parent_task_run_id ?? null, state: 'Pending', message: null,
          attempts: 0, created: event.timestamp, start: null, end: null, duration_ms: null,
          parameters: kind.parameters ?? null, tags: kind.tags || [], upstream: kind.upstream || [],
          map_index: kind.map_index ?? null, retries: kind.retries ?? 0,
        };
        detail.task_runs.push(t);
        tasksById.set(runId, t);
      }
      return true;
    }
    if (kind.type !== 'state_changed') return true;
    const run = event.task_run_id ? tasksById.get(runId) : detail.run;
    if (!run) return false;
    mergeState(run, kind, event.timestamp);
    const change = { run_id: runId, state: kind.state, attempt: kind.attempt, timestamp: event.timestamp, message: kind.message ?? null };
    if (!changeKeys.has(keyOf(change))) {
      changeKeys.add(keyOf(change));
      changes.push(change);
    }
    return true;
  }

  const refresh = throttle(load, 1000);
  const renderSoon = throttle(() => { if (!stopped && detail) render(); }, 250);
  load();
  const stop = subscribe({ flow_run_id: id }, (event) => {
    if (!event) {
      // Reconnected, or events were missed: catch up on everything.
      refresh();
      logs.reload();
      return;
    }
    if (event.kind?.type === 'log') {
      logs.push(event);
      return;
    }
    if (inFlight) sinceLoad.push(event);
    if (!apply(event)) refresh();
    else renderSoon();
    // The run ended: one full load for the server's final word.
    if (!event.task_run_id && TERMINAL.has(event.kind?.state)) refresh();
  });
  // While it runs, its bars and durations grow (the rest of the page stays as it is).
  let ticks = 0;
  const tick = setInterval(() => {
    if (!detail || TERMINAL.has(detail.run.state)) return;
    // Child flow runs send their events under their own id: look at them every 10 s.
    if (++ticks % 10 === 0) refresh();
    renderHead(detail.run);
    lastRows = rowsOf(detail.run, Date.now());
    renderTimeline(lastRows, detail.run, Date.now());
  }, 1000);
  return () => { stopped = true; stop(); clearInterval(tick); tl.destroy(); };
}
