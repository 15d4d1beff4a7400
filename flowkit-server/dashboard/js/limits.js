// The limits page: each concurrency limit by tag and rate limit, its slots in use, the task
// runs holding them (links to their flow runs) and how many wait.

import { get } from './api.js';
import { errorState, h, relative, shortId, throttle, time } from './dom.js';

/** How often the page asks again: slots change without events of their own. */
const EVERY_MS = 2000;

function rateWords(l) {
  if (!l.rate) return h('span', { class: 'muted' }, '—');
  const unit = { 1000: 's', 60000: 'm', 3600000: 'h', 86400000: 'd' }[l.rate.per_ms] || `${l.rate.per_ms} ms`;
  return `${l.rate.count}/${unit}${l.burst > 1 ? ` (burst ${l.burst})` : ''}`;
}

function holder(x) {
  const href = x.flow_run_id ? `#/runs/${x.flow_run_id}/tasks/${x.task_run_id}` : null;
  return h('li', { 'data-testid': 'limit-holder', title: `since ${time(x.acquired_at)}` },
    href ? h('a', { href, class: 'mono' }, shortId(x.task_run_id)) : h('span', { class: 'mono' }, shortId(x.task_run_id)),
    h('span', { class: 'muted small' }, ` ${relative(x.acquired_at)}`));
}

export function limitsPage({ root, subscribe }) {
  let stopped = false;
  const body = h('div', { 'data-testid': 'limits' }, h('div', { class: 'loading' }, 'Loading limits…'));
  root.append(h('div', { class: 'page-head' }, h('h1', {}, 'Limits')), body);

  function row(l) {
    const used = l.holders.length;
    return h('tr', { 'data-testid': 'limit-row', 'data-name': l.name },
      h('td', {}, h('strong', {}, l.name)),
      h('td', { class: 'num', 'data-testid': 'limit-slots' }, l.concurrency == null ? '—' : `${used} / ${l.concurrency}`),
      h('td', { class: 'num', 'data-testid': 'limit-waiting' }, String(l.waiting)),
      h('td', { 'data-testid': 'limit-rate' }, rateWords(l)),
      h('td', {}, used ? h('ul', { class: 'plain' }, l.holders.map(holder)) : h('span', { class: 'muted' }, '—')));
  }

  async function load() {
    try {
      const limits = await get('/api/limits');
      if (stopped) return;
      if (!limits.length) {
        body.replaceChildren(h('div', { class: 'panel empty', 'data-testid': 'empty' }, h('h2', {}, 'No limits yet'),
          h('p', {}, 'At most N task runs with a tag at once, across every program; or a rate for flowkit::rate_limit(name):'),
          h('pre', {}, 'flowkit limits set api 5\nflowkit limits set orders-api --rate 10/s --burst 5')));
        return;
      }
      body.replaceChildren(h('div', { class: 'panel flush scroll-x' }, h('table', { class: 'list' },
        h('thead', {}, h('tr', {}, ['Tag / name', 'Slots in use', 'Waiting', 'Rate', 'Held by (task runs)']
          .map((t) => h('th', { class: t === 'Slots in use' || t === 'Waiting' ? 'num' : null }, t)))),
        h('tbody', {}, limits.map(row)))));
    } catch (error) {
      if (!stopped) body.replaceChildren(errorState(error, load));
    }
  }

  load();
  const timer = setInterval(load, EVERY_MS);
  // Task runs starting and ending take and give back slots.
  const refresh = throttle(load, 500);
  const stop = subscribe({ task_events: true }, (event) => {
    if (event?.kind?.type === 'state_changed') refresh();
  });
  return () => { stopped = true; stop(); clearInterval(timer); };
}
