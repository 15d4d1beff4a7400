// Home, for the person on call: runs by state over the last day, the failed and crashed runs
// most recent first, the flows failing most, and what is running now.

import { get } from './api.js';
import { FAILED, STATES, badge, duration, elapsed, errorState, h, relative, shortId, snippet, stateColor, throttle } from './dom.js';

const DAY = 86400e3;

export function homePage({ root, subscribe }) {
  let stopped = false;
  const counts = h('section', { class: 'panel', 'data-testid': 'home-counts' }, h('div', { class: 'loading' }, 'Loading…'));
  const failed = h('section', { class: 'panel flush', 'data-testid': 'home-failed' });
  const failing = h('section', { class: 'panel', 'data-testid': 'home-failing-flows' });
  const running = h('section', { class: 'panel flush', 'data-testid': 'home-running' });
  root.append(h('div', { class: 'page-head' }, h('h1', {}, 'What needs attention')), counts, failed,
    h('div', { class: 'columns' }, failing, running));

  const runLink = (run) => h('a', { href: `#/runs/${run.id}` }, run.run_name || shortId(run.id));
  const list = (title, testid, runs, empty, extra) => [
    h('div', { style: { padding: '16px 16px 0' } }, h('h2', {}, title)),
    runs.length
      ? h('ul', { class: 'home-list' }, runs.map((run) => h('li', { 'data-testid': testid, 'data-run-id': run.id },
        badge(run.state), h('div', { class: 'home-run' }, h('div', {}, h('strong', {}, run.name), ' · ', runLink(run)),
          extra(run)))))
      : h('p', { class: 'muted', style: { padding: '0 16px 16px' } }, empty),
  ];

  async function load() {
    const until = new Date();
    const since = new Date(until.getTime() - DAY);
    try {
      const [activity, failures, now] = await Promise.all([
        get('/api/flow_activity', { since: since.toISOString(), until: until.toISOString(), buckets: 1 }),
        get('/api/flow_runs', { state: FAILED.join(','), since: since.toISOString(), limit: 10 }),
        get('/api/flow_runs', { state: 'Running,Retrying', limit: 20 }),
      ]);
      if (stopped) return;
      const byState = {};
      const perFlow = [];
      for (const flow of activity.flows) {
        let bad = 0;
        let total = 0;
        for (const bucket of flow.buckets) {
          for (const [st, n] of Object.entries(bucket)) {
            byState[st] = (byState[st] || 0) + n;
            total += n;
            if (FAILED.includes(st)) bad += n;
          }
        }
        if (bad) perFlow.push({ name: flow.name, bad, total });
      }
      counts.replaceChildren(h('h2', {}, 'Flow runs in the last 24 hours'),
        Object.keys(byState).length
          ? h('div', { class: 'home-counts' }, STATES.filter((st) => byState[st]).map((st) =>
            h('a', { class: 'home-count', href: `#/runs?state=${st}&range=24h`, 'data-testid': 'home-count', 'data-state': st, style: { '--state': stateColor(st) } },
              h('span', { class: 'value' }, byState[st].toLocaleString()), h('span', { class: 'name' }, st))))
          : h('p', { class: 'muted' }, 'No flow runs in the last 24 hours.'));
      failed.replaceChildren(...list('Failed, crashed or timed out, most recent first', 'home-failed-run', failures.items,
        'Nothing failed in the last 24 hours.',
        (run) => [h('div', { class: 'small error-text snippet' }, snippet(run.message)),
          h('div', { class: 'muted small' }, relative(run.end || run.start || run.created))]));
      perFlow.sort((a, b) => b.bad - a.bad || b.bad / b.total - a.bad / a.total);
      failing.replaceChildren(h('h2', {}, 'Flows failing most'), perFlow.length
        ? h('ol', { class: 'home-flows' }, perFlow.slice(0, 8).map((f) => h('li', { 'data-testid': 'home-failing-flow', 'data-flow': f.name },
          h('a', { href: `#/runs?flow=${encodeURIComponent(f.name)}&state=${FAILED.join(',')}&range=24h` }, f.name),
          h('span', { class: 'error-text' }, ` ${f.bad} of ${f.total} runs failed`))))
        : h('p', { class: 'muted' }, 'No flow failed in the last 24 hours.'));
      running.replaceChildren(...list('Running now', 'home-running-run', now.items, 'Nothing is running.',
        (run) => h('div', { class: 'muted small' }, `for ${duration(elapsed(run))}`)));
      if (!performance.getEntriesByName('flowkit:home-rendered').length) performance.mark('flowkit:home-rendered');
    } catch (error) {
      if (!stopped) counts.replaceChildren(errorState(error, load));
    }
  }

  load();
  const refresh = throttle(load, 2000);
  const stop = subscribe({ task_events: false }, (event) => { if (event?.kind?.type !== 'log') refresh(); });
  return () => { stopped = true; stop(); };
}
