// A flow run's logs: filtered by level and task run, paged, and followed live.

import { get } from './api.js';
import { clock, errorState, h } from './dom.js';

const PAGE = 500;
const LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'];

/**
 * `nameOf(taskRunId)` labels lines; returns `{ el, setTask(id), push(event), reload() }`. Nothing
 * loads until the first `reload()`, so lines are labelled once the task names are known.
 */
export function logsPanel(flowRunId, nameOf) {
  let level = '';
  let task = null;
  let cursor = null;
  let count = 0;
  let generation = 0;
  const list = h('div', { class: 'logs', 'data-testid': 'logs', role: 'log' });
  const levelSelect = h('select', { 'aria-label': 'Level', 'data-testid': 'log-level' },
    h('option', { value: '' }, 'All levels'), LEVELS.map((l) => h('option', { value: l }, l)));
  const taskChip = h('span', { class: 'muted', 'data-testid': 'log-task' });
  const more = h('div', { class: 'more' });
  const el = h('section', { class: 'panel', 'data-testid': 'logs-panel' },
    h('h2', {}, 'Logs'), h('div', { class: 'logs-tools' }, levelSelect, taskChip), list, more);

  function line(l) {
    const who = l.task_run_id ? nameOf(l.task_run_id) : 'flow';
    const fields = l.fields && typeof l.fields === 'object' && Object.keys(l.fields).length
      ? ` ${Object.entries(l.fields).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ')}` : '';
    return h('div', { class: 'log', 'data-testid': 'log-line', 'data-task-run-id': l.task_run_id || '' },
      h('span', { class: 'muted', title: l.timestamp }, clock(l.timestamp)),
      h('span', { class: `lvl lvl-${l.level}` }, l.level),
      h('span', { class: 'who', title: who }, who),
      h('span', { class: 'msg' }, l.message, h('span', { class: 'fields' }, fields)));
  }

  function renderTask() {
    taskChip.replaceChildren(task
      ? h('span', { class: 'chip', 'aria-pressed': 'true' }, `Task: ${nameOf(task)}`,
        h('button', { type: 'button', class: 'ghost', 'aria-label': 'Show all tasks', onclick: () => setTask(null), style: { padding: '0 4px' } }, '×'))
      : 'All tasks · select a task in the timeline to see only its lines');
  }

  function empty() {
    list.replaceChildren(h('div', { class: 'empty', 'data-testid': 'logs-empty' },
      level || task ? 'No log lines match these filters.' : 'No log lines yet. Lines logged with `tracing` inside a task or flow appear here.'));
  }

  async function page(first) {
    const mine = generation;
    try {
      const result = await get(`/api/flow_runs/${flowRunId}/logs`, {
        level, task_run_id: task, limit: PAGE, cursor: first ? null : cursor,
      });
      if (mine !== generation) return;
      if (first) list.replaceChildren();
      list.append(...result.items.map(line));
      count += result.items.length;
      cursor = result.next_cursor || null;
      more.replaceChildren(cursor ? h('button', { type: 'button', onclick: () => page(false) }, 'Load more lines') : '');
      if (!count) empty();
    } catch (error) {
      if (mine === generation) list.replaceChildren(errorState(error, () => page(first)));
    }
  }

  function reload() {
    generation += 1;
    count = 0;
    cursor = null;
    renderTask();
    page(true);
  }

  function setTask(id) {
    task = id;
    reload();
  }

  /** A live event: appended if it is a log line that matches and every earlier page is shown. */
  function push(event) {
    if (event.kind?.type !== 'log' || cursor) return;
    const l = { ...event.kind, id: event.id, timestamp: event.timestamp, task_run_id: event.task_run_id };
    if ((level && l.level !== level) || (task && l.task_run_id !== task)) return;
    const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    if (!count) list.replaceChildren();
    count += 1;
    list.append(line(l));
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  levelSelect.addEventListener('change', () => { level = levelSelect.value; reload(); });
  return { el, setTask, push, reload };
}
