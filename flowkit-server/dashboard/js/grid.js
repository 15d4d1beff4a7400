// A flow's grid (like Airflow's): its last runs as columns, oldest first, its tasks as rows,
// each cell the worst state of that task's runs in that flow run, so a month of backfills shows
// at once which day and which task went wrong.

import { get } from './api.js';
import { errorState, h, shortId, stateColor, throttle } from './dom.js';

/** The state a cell shows: the worst among its task runs. */
const WORST = ['Crashed', 'Failed', 'TimedOut', 'Cancelled', 'Skipped', 'Running', 'Retrying', 'Pending', 'Scheduled', 'Cached', 'Completed'];

export function gridPage({ root, subscribe }, flow) {
  let stopped = false;
  const body = h('section', { class: 'panel', 'data-testid': 'grid-panel' }, h('div', { class: 'loading' }, 'Loading the grid…'));
  root.append(h('div', { class: 'crumbs' }, h('a', { href: '#/flows' }, 'Flows'), ' / ', flow),
    h('div', { class: 'page-head' }, h('h1', {}, `${flow}: runs × tasks`), h('span', { class: 'spacer' }),
      h('a', { href: `#/runs?flow=${encodeURIComponent(flow)}` }, 'Its runs →')), body);

  async function load() {
    try {
      const grid = await get(`/api/flows/${encodeURIComponent(flow)}/grid`, { limit: 60 });
      if (stopped) return;
      if (!grid.runs.length) {
        body.replaceChildren(h('p', { class: 'muted', 'data-testid': 'grid-empty' }, 'This flow has no runs that started.'));
        return;
      }
      const runs = grid.runs.slice().reverse();
      const cells = new Map();
      for (const c of grid.cells) {
        const key = `${c.flow_run_id} ${c.task}`;
        const cell = cells.get(key) || {};
        cell[c.state] = c.count;
        cells.set(key, cell);
      }
      const label = (run) => run.run_name || shortId(run.id);
      body.replaceChildren(h('div', { class: 'scroll-x' }, h('table', { class: 'grid', 'data-testid': 'grid' },
        h('thead', {}, h('tr', {}, h('th', { class: 'grid-task' }, 'Task'),
          runs.map((run) => h('th', { class: 'grid-run', title: `${label(run)} · ${run.state}` },
            h('a', { href: `#/runs/${run.id}`, 'data-testid': 'grid-run' }, h('span', {}, label(run))),
            h('span', { class: 'grid-flow-state', style: { '--state': stateColor(run.state) }, 'data-state': run.state }))))),
        h('tbody', {}, grid.tasks.map((task) => h('tr', {}, h('th', { class: 'grid-task', title: task }, task),
          runs.map((run) => {
            const counts = cells.get(`${run.id} ${task}`);
            if (!counts) return h('td', { class: 'grid-cell none', 'data-testid': 'grid-cell', 'data-task': task, 'data-run': label(run), 'data-state': 'none', title: `${task} did not run in ${label(run)}` });
            const state = WORST.find((st) => counts[st]) || Object.keys(counts)[0];
            const text = Object.entries(counts).map(([st, n]) => `${n} ${st}`).join(', ');
            return h('td', { class: 'grid-cell', 'data-testid': 'grid-cell', 'data-task': task, 'data-run': label(run), 'data-state': state, title: `${task} in ${label(run)}: ${text}` },
              h('a', { href: `#/runs/${run.id}`, style: { '--state': stateColor(state) }, 'aria-label': `${task} in ${label(run)}: ${text}` }));
          })))))));
    } catch (error) {
      if (!stopped) body.replaceChildren(errorState(error, load));
    }
  }

  load();
  const refresh = throttle(load, 2000);
  const stop = subscribe({ task_events: false }, (event) => { if (event?.kind?.type !== 'log') refresh(); });
  return () => { stopped = true; stop(); };
}
