// The workers page: the programs that poll this server for runs, what they serve and hold,
// and when each was last heard from.

import { get } from './api.js';
import { errorState, h, pill, relative, shortId, throttle, time } from './dom.js';

/** A worker's state in the colors of run states: online runs, lost crashed. */
const COLORS = { online: 'Completed', stopping: 'Retrying', stopped: 'Cancelled', lost: 'Crashed' };

/** How often the page asks again: workers poll, they send no events. */
const EVERY_MS = 3000;

/** When a worker was last heard from, to the second while it is recent. */
function seen(iso) {
  const sec = (Date.now() - new Date(iso).getTime()) / 1000;
  return sec < 60 ? `${Math.max(0, Math.round(sec))} s ago` : relative(iso);
}

export function workersPage({ root, subscribe }) {
  let stopped = false;
  const body = h('div', { 'data-testid': 'workers' }, h('div', { class: 'loading' }, 'Loading workers…'));
  root.append(h('div', { class: 'page-head' }, h('h1', {}, 'Workers')), body);

  function row(w) {
    return h('tr', { 'data-testid': 'worker-row', 'data-name': w.name, 'data-state': w.state },
      h('td', {}, h('strong', {}, w.name)),
      h('td', { 'data-testid': 'worker-host' }, w.host || h('span', { class: 'muted' }, '—')),
      h('td', { 'data-testid': 'worker-queues' }, w.queues.length ? w.queues.map((q) => h('span', { class: 'tag' }, q)) : h('span', { class: 'muted' }, 'every queue')),
      h('td', {}, w.deployments.length ? w.deployments.map((d) => h('a', { class: 'tag', href: `#/runs?q=${encodeURIComponent(d)}` }, d)) : h('span', { class: 'muted' }, '—')),
      h('td', { class: 'num', 'data-testid': 'worker-runs' }, String(w.runs.length),
        w.runs.length ? h('div', { class: 'small' }, w.runs.slice(0, 5).map((id, i) => [i ? ', ' : '', h('a', { href: `#/runs/${id}`, class: 'mono' }, shortId(id))]),
          w.runs.length > 5 ? ` +${w.runs.length - 5}` : null) : null),
      h('td', { title: time(w.last_seen), 'data-testid': 'worker-last-seen' }, seen(w.last_seen)),
      h('td', {}, pill(w.state, COLORS[w.state] || 'Pending')));
  }

  async function load() {
    try {
      const workers = await get('/api/workers');
      if (stopped) return;
      if (!workers.length) {
        body.replaceChildren(h('div', { class: 'panel empty', 'data-testid': 'empty' }, h('h2', {}, 'No workers yet'),
          h('p', {}, 'A program that calls flowkit::serve with FLOWKIT_API_URL set polls this server for runs, and shows here:'),
          h('pre', {}, `FLOWKIT_API_URL=${location.origin} cargo run --example nightly_etl`)));
        return;
      }
      body.replaceChildren(h('div', { class: 'panel flush scroll-x' }, h('table', { class: 'list' },
        h('thead', {}, h('tr', {}, ['Worker', 'Host', 'Queues', 'Deployments', 'Runs in hand', 'Last seen', 'State']
          .map((t) => h('th', { class: t === 'Runs in hand' ? 'num' : null }, t)))),
        h('tbody', {}, workers.map(row)))));
    } catch (error) {
      if (!stopped) body.replaceChildren(errorState(error, load));
    }
  }

  load();
  const timer = setInterval(load, EVERY_MS);
  // Runs starting and ending change what workers hold.
  const refresh = throttle(load, 1000);
  const stop = subscribe({ task_events: false }, (event) => {
    if (event?.kind?.type !== 'log') refresh();
  });
  return () => { stopped = true; stop(); clearInterval(timer); };
}
