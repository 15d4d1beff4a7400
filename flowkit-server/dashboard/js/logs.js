// A flow run's logs: filtered by minimum level and task run, paged, and followed live.

import { get } from './api.js';
import { clock, errorState, h } from './dom.js';

const PAGE = 500;
const LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'];

/**
 * `nameOf(taskRunId)` labels lines; returns `{ el, setTask(id), push(event), reload() }`. Nothing
 * loads until the first `reload()`, so lines are labelled once the task names are known.
 */
export function logsPanel(flowRunId, nameOf, { task: fixedTask = null } = {}) {
  let level = '';
  // A task run's page shows only its lines, for good.
  let task = fixedTask;
  let cursor = null;
  let generation = 0;
  let loading = false;
  // Ids of the lines shown: a line can come both in a page and live.
  let shown = new Set();
  // Live lines that arrived while a page was loading, shown after it.
  let queued = [];
  const list = h('div', { class: 'logs', 'data-testid': 'logs', role: 'log' });
  const levelSelect = h('select', { 'aria-label': 'Minimum level', 'data-testid': 'log-level' },
    h('option', { value: '' }, 'All levels'), LEVELS.map((l) => h('option', { value: l }, `${l} and above`)));
  const taskChip = h('span', { class: 'muted', 'data-testid': 'log-task' });
  const more = h('div', { class: 'more' });
  const el = h('section', { class: 'panel', 'data-testid': 'logs-panel' },
    h('h2', {}, 'Logs'), h('div', { class: 'logs-tools' }, levelSelect, taskChip), list, more);

  const atBottom = () => list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  const matches = (l) => (!level || LEVELS.indexOf(l.level) >= LEVELS.indexOf(level)) && (!task || l.task_run_id === task);

  function line(l) {
    const who = l.task_run_id ? nameOf(l.task_run_id) : 'flow';
    const fields = l.fields && typeof l.fields === 'object' && Object.keys(l.fields).length
      ? ` ${Object.entries(l.fields).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ')}` : '';
    return h('div', { class: 'log', 'data-testid': 'log-line', 'data-task-run-id': l.task_run_id || '', 'data-level': l.level },
      h('span', { class: 'muted', title: l.timestamp }, clock(l.timestamp)),
      h('span', { class: `lvl lvl-${l.level}` }, l.level),
      h('span', { class: 'who', title: who }, who),
      h('span', { class: 'msg' }, l.message, h('span', { class: 'fields' }, fields)));
  }

  function append(lines) {
    const fresh = lines.filter((l) => !shown.has(l.id));
    if (!fresh.length) return;
    if (!shown.size) list.replaceChildren();
    for (const l of fresh) shown.add(l.id);
    list.append(...fresh.map(line));
  }

  function renderTask() {
    if (fixedTask) { taskChip.replaceChildren(); return; }
    taskChip.replaceChildren(task
      ? h('span', { class: 'chip', 'aria-pressed': 'true' }, `Task: ${nameOf(task)}`,
        h('button', { type: 'button', class: 'ghost', 'aria-label': 'Show all tasks', onclick: () => setTask(null), style: { padding: '0 4px' } }, '×'))
      : 'All tasks · select a task in the timeline to see only its lines');
  }

  function empty() {
    list.replaceChildren(h('div', { class: 'empty', 'data-testid': 'logs-empty' },
      level || task ? 'No log lines match these filters.' : 'No log lines yet. Lines logged with tracing inside a task or flow appear here, and flowkit adds one for each failed attempt, retry, timeout, crash and cancel.'));
  }

  async function page(first) {
    const mine = generation;
    loading = true;
    const follow = atBottom();
    try {
      const result = await get(`/api/flow_runs/${flowRunId}/logs`, {
        min_level: level, task_run_id: task, limit: PAGE, cursor: first ? null : cursor,
      });
      if (mine !== generation) return;
      append(result.items);
      cursor = result.next_cursor || null;
      loading = false;
      // Lines that came live meanwhile follow, unless more pages come first.
      if (!cursor) append(queued);
      queued = [];
      more.replaceChildren(cursor ? h('button', { type: 'button', onclick: () => page(false) }, 'Load more lines') : '');
      if (!shown.size) empty();
      if (follow && !first) list.scrollTop = list.scrollHeight;
    } catch (error) {
      if (mine === generation) {
        loading = false;
        list.replaceChildren(errorState(error, () => page(first)));
      }
    }
  }

  function reload() {
    generation += 1;
    shown = new Set();
    queued = [];
    cursor = null;
    renderTask();
    page(true);
  }

  function setTask(id) {
    task = id;
    reload();
  }

  /**
   * A live event. A matching log line is appended; while a page loads it waits for it; when
   * older pages are still to load and the reader is at the bottom, the next page loads (the
   * line comes with it), so the view keeps following the run.
   */
  function push(event) {
    if (event.kind?.type !== 'log') return;
    const l = { ...event.kind, id: event.id, timestamp: event.timestamp, task_run_id: event.task_run_id };
    if (!matches(l)) return;
    if (loading) { queued.push(l); return; }
    if (cursor) { if (atBottom()) page(false); return; }
    const follow = atBottom();
    append([l]);
    if (follow) list.scrollTop = list.scrollHeight;
  }

  list.addEventListener('scroll', () => { if (cursor && !loading && atBottom()) page(false); }, { passive: true });
  levelSelect.addEventListener('change', () => { level = levelSelect.value; reload(); });
  return { el, setTask, push, reload };
}
