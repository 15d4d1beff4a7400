// The deployments page: each deployment with its schedules in words, next, upcoming and last
// runs; a switch to pause its schedules, and a "Run" form drawn from its parameters' schema.

import { get, send } from './api.js';
import { errorState, h, isLate, lateTag, relative, shortId, stateColor, throttle, time } from './dom.js';
import { errors, field, parameterFields } from './form.js';

/** The last runs as a strip of squares in state colors, oldest on the left; each opens its run. */
function strip(runs) {
  return h('span', { class: 'strip', 'data-testid': 'last-runs' }, [...runs].reverse().map((run) => {
    const day = (run.interval_start || run.scheduled || '').slice(0, 10);
    return h('a', { href: `#/runs/${run.id}`, class: 'cell', style: { '--state': stateColor(run.state) }, 'data-state': run.state, title: `${day} · ${run.state}` });
  }));
}

/** When an upcoming run is due, in words. */
function due(iso) {
  const words = relative(iso);
  return words === 'just now' ? 'due now' : words;
}

/** How many upcoming runs a row lists before "more". */
const UPCOMING = 3;

/** The runs waiting for their time or a worker, soonest first; each opens its run. */
function upcoming(d, work) {
  if (!work) return h('span', { class: 'muted' }, '—');
  const waiting = work.filter((w) => w.status === 'scheduled')
    .sort((a, b) => Date.parse(a.scheduled_at) - Date.parse(b.scheduled_at));
  if (!waiting.length) return h('span', { class: 'muted' }, 'none');
  const now = Date.now();
  return h('ul', { class: 'upcoming', 'data-testid': 'upcoming-runs' },
    waiting.slice(0, UPCOMING).map((w) => h('li', { 'data-testid': 'upcoming-run', 'data-run-id': w.id },
      h('a', { href: `#/runs/${w.id}`, title: `${w.origin} run ${shortId(w.id)}` }, time(w.scheduled_at)), ' ',
      isLate('Scheduled', w.scheduled_at, now) ? lateTag(w.scheduled_at) : h('span', { class: 'muted' }, due(w.scheduled_at)),
      w.origin !== 'schedule' ? [' ', h('span', { class: 'tag' }, w.origin)] : null)),
    waiting.length > UPCOMING
      ? h('li', {}, h('a', { href: `#/runs?q=${encodeURIComponent(d.name)}&state=Scheduled` }, `${waiting.length - UPCOMING} more`))
      : null);
}

export function deploymentsPage({ root, subscribe }) {
  let stopped = false;
  let deployments = [];
  const body = h('div', { 'data-testid': 'deployments' }, h('div', { class: 'loading' }, 'Loading deployments…'));
  const notice = h('div', { role: 'alert' });
  const dialog = h('dialog', { class: 'run-dialog', 'data-testid': 'run-dialog', 'aria-labelledby': 'run-dialog-title' });
  root.append(h('div', { class: 'page-head' }, h('h1', {}, 'Deployments')), notice, body, dialog);
  // Closed, the dialog gives the keyboard back to its deployment's Run button (redrawn since).
  let opened = null;
  dialog.addEventListener('close', () => {
    if (opened) body.querySelector(`[data-focus="${CSS.escape(`run:${opened}`)}"]`)?.focus();
  });

  async function setPaused(d, paused, button) {
    button.disabled = true;
    notice.replaceChildren();
    try {
      await send('PATCH', `/api/deployments/${encodeURIComponent(d.name)}`, { paused });
    } catch (error) {
      notice.replaceChildren(h('div', { class: 'callout' }, `Could not ${paused ? 'pause' : 'resume'} ${d.name}: ${error.message}`));
    }
    await load();
  }

  function row(d, work) {
    const next = d.next_runs[0];
    const name = encodeURIComponent(d.name);
    // A switch named for what "on" means; its state is the knob (and aria-checked), the
    // Schedule column says "paused" in words.
    const toggle = h('button', { type: 'button', class: 'switch', role: 'switch', 'aria-checked': String(!d.paused), 'data-needs': 'operate',
      'aria-label': `Active: ${d.name}`, 'data-testid': 'pause-toggle', 'data-focus': `pause:${d.name}`,
      title: d.paused ? 'Paused: its schedules make no runs. Switch on to resume.' : 'Active. Switch off to pause its schedules.' },
    h('span', { class: 'knob', 'aria-hidden': 'true' }), 'Active');
    toggle.addEventListener('click', () => setPaused(d, !d.paused, toggle));
    return h('tr', { 'data-testid': 'deployment-row', 'data-name': d.name, 'data-paused': String(d.paused) },
      h('td', {}, h('a', { href: `#/runs?q=${name}` }, d.name),
        h('div', { class: 'muted small' }, d.flow, d.queue && d.queue !== 'default' ? ` · queue ${d.queue}` : null,
          d.priority ? ` · priority ${d.priority}` : null)),
      h('td', { 'data-testid': 'schedule' }, d.schedules.length ? d.schedules.map((text) => h('div', {}, text)) : h('span', { class: 'muted' }, 'on demand'),
        d.paused && !d.paused_by ? h('span', { class: 'tag' }, 'paused') : null,
        d.paused_by ? h('a', { class: 'tag breaker', href: `#/audit?deployment=${name}`, 'data-testid': 'breaker-badge',
          title: `Paused by ${d.paused_by} after consecutive failures. Switch it on to resume.` }, `paused by breaker (${d.paused_by.replace(/^automation:/, '')})`) : null,
        d.catchup ? h('span', { class: 'tag' }, 'catchup') : null),
      h('td', { 'data-testid': 'next-run', title: next || '' }, next ? time(next) : '—',
        next ? h('div', { class: 'muted small' }, relative(next)) : null),
      h('td', {}, upcoming(d, work)),
      h('td', {}, d.last_runs.length ? strip(d.last_runs) : h('span', { class: 'muted' }, 'no runs yet')),
      h('td', { class: 'num' }, String(d.max_active_runs)),
      h('td', { class: 'actions-cell' },
        h('button', { type: 'button', class: 'primary', 'data-testid': 'run-button', 'data-focus': `run:${d.name}`, 'data-needs': 'operate',
          'aria-haspopup': 'dialog', onclick: () => openRun(d) }, 'Run'),
        toggle,
        h('a', { href: `#/backfills?deployment=${name}`, class: 'small', 'data-needs': 'operate' }, 'Backfill'),
        h('a', { href: `#/audit?deployment=${name}`, class: 'small', 'data-testid': 'deployment-audit' }, 'Who did what')));
  }

  /** The "Run" dialog of `d`: its parameters as a form, filled with its defaults. */
  function openRun(d) {
    const params = parameterFields(d.parameter_schema, d.parameters);
    const start = h('input', { type: 'datetime-local', step: '1', name: 'scheduled_at', 'data-testid': 'run-start' });
    const startField = field('scheduled_at', 'Start', start, 'Empty: now. Local time.');
    const general = h('p', { class: 'callout', role: 'alert', 'data-testid': 'form-error' });
    const shown = errors([...params.fields, startField], general);
    const result = h('div', { role: 'status', 'data-testid': 'run-result' });
    const submit = h('button', { type: 'submit', class: 'primary', 'data-testid': 'run-submit' }, 'Run');
    const form = h('form', { novalidate: true, 'data-testid': 'run-form' },
      h('h2', { id: 'run-dialog-title' }, 'Run ', h('span', { class: 'mono' }, d.name)),
      h('p', { class: 'muted small' }, `Flow ${d.flow}. Parameters not given take the deployment's defaults.`),
      params.el, h('div', { class: 'fields' }, startField.el), general, result,
      h('div', { class: 'actions' }, h('button', { type: 'button', onclick: () => dialog.close() }, 'Close'), submit));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      shown.clear();
      result.replaceChildren();
      const read = params.read();
      if (read.invalid) return;
      const request = { parameters: read.parameters };
      if (start.validity.badInput) { startField.error('Enter a complete date and time.'); return; }
      if (start.value) request.scheduled_at = new Date(start.value).toISOString();
      submit.disabled = true;
      try {
        const run = await send('POST', `/api/deployments/${encodeURIComponent(d.name)}/runs`, request);
        result.replaceChildren(h('div', { class: 'success', 'data-testid': 'run-created', 'data-run-id': run.id },
          h('strong', {}, run.created === false ? 'That run already exists: ' : 'Run created: '),
          h('a', { href: `#/runs/${run.id}`, 'data-testid': 'new-run-link' }, `${d.flow} ${shortId(run.id)}`),
          `, scheduled for ${time(run.scheduled_at)}.`));
        load();
      } catch (error) {
        shown.show(error.field, error.message);
      } finally {
        submit.disabled = false;
      }
    });
    opened = d.name;
    dialog.replaceChildren(form);
    dialog.showModal();
    (form.querySelector('input, select, textarea') || submit).focus();
  }

  async function load() {
    try {
      const list = await get('/api/deployments');
      const work = await Promise.all(list.map((d) =>
        get(`/api/deployments/${encodeURIComponent(d.name)}/runs`, { limit: 200 }).catch(() => null)));
      if (stopped) return;
      deployments = list;
      if (!deployments.length) {
        body.replaceChildren(h('div', { class: 'panel empty', 'data-testid': 'empty' }, h('h2', {}, 'No deployments yet'),
          h('p', {}, 'A program that calls flowkit::serve registers its deployments here:'),
          h('pre', {}, `FLOWKIT_API_URL=${location.origin} cargo run --example nightly_etl`)));
        return;
      }
      // Keep the keyboard where it was across the redraw.
      const focused = document.activeElement?.dataset?.focus;
      body.replaceChildren(h('div', { class: 'panel flush scroll-x' }, h('table', { class: 'list' },
        h('thead', {}, h('tr', {}, ['Deployment', 'Schedule', 'Next run', 'Upcoming runs', 'Last runs', 'Max active', 'Actions']
          .map((t) => h('th', { class: t === 'Max active' ? 'num' : null }, t)))),
        h('tbody', {}, deployments.map((d, i) => row(d, work[i]))))));
      if (focused) body.querySelector(`[data-focus="${CSS.escape(focused)}"]`)?.focus();
    } catch (error) {
      if (!stopped) body.replaceChildren(errorState(error, load));
    }
  }

  load();
  const refresh = throttle(load, 2000);
  const stop = subscribe({ task_events: false }, (event) => {
    if (event?.kind?.type !== 'log') refresh();
  });
  // Next runs move with the clock, and runs turn late.
  const timer = setInterval(load, 15000);
  return () => { stopped = true; stop(); clearInterval(timer); if (dialog.open) dialog.close(); };
}
