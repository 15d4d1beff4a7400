// The flows page: per flow, runs by state over time, success rate, p50/p95 durations, last run.

import { get } from './api.js';
import { FAILED, STATES, TERMINAL, duration, errorState, h, relative, s, stateColor, throttle } from './dom.js';

const WINDOWS = { '24h': [86400e3, 24], '7d': [7 * 86400e3, 28], '30d': [30 * 86400e3, 30] };

/** Stacked bars, one per bucket, in state colors. */
function chart(buckets, since, bucketMs) {
  const W = 360;
  const H = 120;
  const top = 8;
  const bottom = 20;
  const left = 28;
  const max = Math.max(1, ...buckets.map((b) => Object.values(b).reduce((a, n) => a + n, 0)));
  const bw = (W - left) / buckets.length;
  const y = (n) => ((H - top - bottom) * n) / max;
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, width: '100%', role: 'img', 'data-testid': 'activity-chart', 'aria-label': 'Runs by state over time' });
  svg.append(
    s('line', { class: 'grid', x1: left, x2: W, y1: H - bottom, y2: H - bottom }),
    s('line', { class: 'grid', x1: left, x2: W, y1: top, y2: top }),
    s('text', { x: left - 4, y: top + 4, 'text-anchor': 'end' }, String(max)),
    s('text', { x: left - 4, y: H - bottom + 4, 'text-anchor': 'end' }, '0'));
  buckets.forEach((bucket, i) => {
    let base = H - bottom;
    const start = new Date(since.getTime() + i * bucketMs);
    const total = Object.values(bucket).reduce((a, n) => a + n, 0);
    for (const state of STATES) {
      const n = bucket[state];
      if (!n) continue;
      const height = Math.max(1, y(n));
      base -= height;
      svg.append(s('rect', { x: left + i * bw + 1, y: base, width: Math.max(1, bw - 2), height, fill: stateColor(state), 'data-state': state },
        s('title', {}, `${start.toLocaleString()}: ${n} ${state} of ${total}`)));
    }
  });
  // Hours for a day's window, dates for longer ones; the start, the middle and the end.
  const span = bucketMs * buckets.length;
  const fmt = (d) => (span <= 86400e3
    ? d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' })
    : d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' }));
  const middle = new Date(since.getTime() + span / 2);
  svg.append(
    s('text', { x: left, y: H - 4, 'data-testid': 'chart-start' }, fmt(since)),
    s('text', { x: left + (W - left) / 2, y: H - 4, 'text-anchor': 'middle' }, fmt(middle)),
    s('text', { x: W, y: H - 4, 'text-anchor': 'end' }, 'now'));
  return svg;
}

export function flowsPage({ root, params, subscribe }) {
  let windowName = WINDOWS[params.window] ? params.window : '24h';
  let stopped = false;
  const select = h('select', { 'aria-label': 'Window', 'data-testid': 'window' },
    Object.keys(WINDOWS).map((w) => h('option', { value: w, selected: w === windowName }, `Last ${w}`)));
  const body = h('div', { 'data-testid': 'flows' }, h('div', { class: 'loading' }, 'Loading flows…'));
  root.append(h('div', { class: 'page-head' }, h('h1', {}, 'Flows'), h('span', { class: 'spacer' }), select), body);

  function card(flow, activity, since, bucketMs) {
    // Runs and success rate in the window, from the chart's counts.
    const inWindow = {};
    for (const bucket of activity.buckets) for (const [st, n] of Object.entries(bucket)) inWindow[st] = (inWindow[st] || 0) + n;
    const runs = Object.values(inWindow).reduce((a, n) => a + n, 0);
    const ended = Object.entries(inWindow).filter(([st]) => TERMINAL.has(st)).reduce((a, [, n]) => a + n, 0);
    const good = (inWindow.Completed || 0) + (inWindow.Cached || 0);
    const rate = ended ? `${+((good / ended) * 100).toFixed(1)}%` : '—';
    // A low success rate looks like trouble, not like a full score.
    const health = !ended ? null : good === ended ? 'good' : good / ended >= 0.9 ? 'fair' : 'bad';
    const stat = (name, value, testid, level) => h('div', { class: 'stat' }, h('div', { class: 'value', 'data-testid': testid, 'data-health': level }, value), h('div', { class: 'name' }, name));
    const states = STATES.filter((st) => inWindow[st]);
    return h('section', { class: 'panel card', 'data-testid': 'flow-card', 'data-flow': flow.name },
      h('h2', {}, h('a', { href: `#/runs?flow=${encodeURIComponent(flow.name)}` }, flow.name),
        h('span', { class: 'muted', style: { fontWeight: 400, fontSize: '13px' } }, `last run ${relative(flow.last_run)} · `,
          h('a', { href: `#/flows/${encodeURIComponent(flow.name)}/grid`, 'data-testid': 'grid-link' }, 'grid'))),
      h('div', { class: 'stats' },
        stat('runs', runs.toLocaleString(), 'flow-runs'),
        stat('success', rate, 'success-rate', health),
        stat('p50 duration', duration(flow.p50_ms), 'p50'),
        stat('p95 duration', duration(flow.p95_ms), 'p95')),
      h('p', { class: 'muted note' }, `Counts: last ${windowName} · durations: last 1,000 runs`),
      chart(activity.buckets, since, bucketMs),
      h('div', { class: 'legend' }, states.map((st) => h('span', { style: { '--state': stateColor(st) } }, h('i'), `${st} ${inWindow[st]}`))));
  }

  let generation = 0;

  async function load() {
    const mine = ++generation;
    const [span, buckets] = WINDOWS[windowName];
    const until = new Date();
    const since = new Date(until.getTime() - span);
    try {
      const [flows, activity] = await Promise.all([
        get('/api/flows'),
        get('/api/flow_activity', { since: since.toISOString(), until: until.toISOString(), buckets }),
      ]);
      if (stopped || mine !== generation) return;
      if (!flows.length) {
        body.replaceChildren(h('div', { class: 'panel empty', 'data-testid': 'empty' }, h('h2', {}, 'No flows yet'),
          h('p', {}, 'Flows appear here after their first run reaches this server:'),
          h('pre', {}, `FLOWKIT_API_URL=${location.origin} cargo run --example daily_etl`)));
        return;
      }
      const byName = new Map(activity.flows.map((f) => [f.name, f]));
      const empty = Array.from({ length: buckets }, () => ({}));
      // The flows failing most first (by failed, crashed and timed-out runs in the window), then
      // the most recently run.
      const failures = (f) => (byName.get(f.name)?.buckets || []).reduce((n, b) => n + FAILED.reduce((m, st) => m + (b[st] || 0), 0), 0);
      const order = flows.map((f) => [f, failures(f)]).sort((a, b) => b[1] - a[1] || String(b[0].last_run || '').localeCompare(String(a[0].last_run || ''))).map(([f]) => f);
      body.replaceChildren(h('div', { class: 'cards' }, order.map((f) =>
        card(f, byName.get(f.name) || { buckets: empty }, new Date(activity.since), activity.bucket_seconds * 1000))));
      if (!performance.getEntriesByName('flowkit:flows-rendered').length) performance.mark('flowkit:flows-rendered');
    } catch (error) {
      if (!stopped && mine === generation) body.replaceChildren(errorState(error, load));
    }
  }

  select.addEventListener('change', () => {
    windowName = select.value;
    history.replaceState(null, '', `#/flows?window=${windowName}`);
    load();
  });
  load();
  const refresh = throttle(load, 2000);
  const stop = subscribe({ task_events: false }, (event) => {
    if (event?.kind?.type !== 'log') refresh();
  });
  return () => { stopped = true; stop(); };
}
