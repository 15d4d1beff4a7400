// The deployments page: each deployment with its schedules in words, next runs and last runs.

import { get } from './api.js';
import { errorState, h, relative, stateColor, throttle, time } from './dom.js';

/** The last runs as a strip of squares in state colors, oldest on the left; each opens its run. */
function strip(runs) {
  return h('span', { class: 'strip', 'data-testid': 'last-runs' }, [...runs].reverse().map((run) => {
    const day = (run.interval_start || run.scheduled || '').slice(0, 10);
    return h('a', { href: `#/runs/${run.id}`, class: 'cell', style: { '--state': stateColor(run.state) }, 'data-state': run.state, title: `${day} · ${run.state}` });
  }));
}

export function deploymentsPage({ root, subscribe }) {
  let stopped = false;
  const body = h('div', { 'data-testid': 'deployments' }, h('div', { class: 'loading' }, 'Loading deployments…'));
  root.append(h('div', { class: 'page-head' }, h('h1', {}, 'Deployments')), body);

  function row(d) {
    const next = d.next_runs[0];
    return h('tr', { 'data-testid': 'deployment-row', 'data-name': d.name },
      h('td', {}, h('a', { href: `#/runs?q=${encodeURIComponent(d.name)}` }, d.name),
        h('div', { class: 'muted', style: { fontSize: '12px' } }, d.flow)),
      h('td', { 'data-testid': 'schedule' }, d.schedules.map((text) => h('div', {}, text)),
        d.paused ? h('span', { class: 'tag' }, 'paused') : null,
        d.catchup ? h('span', { class: 'tag' }, 'catchup') : null),
      h('td', { 'data-testid': 'next-run', title: next || '' }, next ? time(next) : '—',
        next ? h('div', { class: 'muted', style: { fontSize: '12px' } }, relative(next)) : null),
      h('td', { class: 'num' }, String(d.max_active_runs)),
      h('td', {}, d.last_runs.length ? strip(d.last_runs) : h('span', { class: 'muted' }, 'no runs yet')));
  }

  async function load() {
    try {
      const deployments = await get('/api/deployments');
      if (stopped) return;
      if (!deployments.length) {
        body.replaceChildren(h('div', { class: 'panel empty', 'data-testid': 'empty' }, h('h2', {}, 'No deployments yet'),
          h('p', {}, 'A program that calls flowkit::serve registers its deployments here:'),
          h('pre', {}, `FLOWKIT_API_URL=${location.origin} cargo run --example nightly_etl`)));
        return;
      }
      body.replaceChildren(h('table', { class: 'list' },
        h('thead', {}, h('tr', {}, ['Deployment', 'Schedule', 'Next run', 'Max active', 'Last runs'].map((t) => h('th', {}, t)))),
        h('tbody', {}, deployments.map(row))));
    } catch (error) {
      if (!stopped) body.replaceChildren(errorState(error, load));
    }
  }

  load();
  const refresh = throttle(load, 2000);
  const stop = subscribe({ task_events: false }, (event) => {
    if (event?.kind?.type !== 'log') refresh();
  });
  // Next runs move with the clock.
  const timer = setInterval(load, 30000);
  return () => { stopped = true; stop(); clearInterval(timer); };
}
