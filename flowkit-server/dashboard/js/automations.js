// Automations: `#/automations` lists the rules (when each fires, which runs it watches, whom it
// tells, its circuit breaker) and their latest notifications with each try (status, error, time).
// Rules are made here (the "New automation" form), with the API or `flowkit automations create`;
// the page deletes them. Both need the operate scope.

import { get, send } from './api.js';
import { h, relative, shortId, time } from './dom.js';
import { errors, field } from './form.js';

const list = (text) => text.split(',').map((s) => s.trim()).filter(Boolean);

/**
 * The form that makes a rule: when it fires, which runs it watches, whom it tells, its breaker.
 * The server checks it and names the field it refuses; `made` is called once it is stored.
 */
function ruleForm(made) {
  const input = (name, attrs = {}) => h('input', { type: 'text', name, autocomplete: 'off', 'data-testid': `automation-${name.replaceAll('.', '-')}`, ...attrs });
  const name = input('name', { required: true, placeholder: 'etl-failures' });
  const kind = h('select', { name: 'on', 'data-testid': 'automation-on' },
    h('option', { value: 'state' }, 'A run ends in a state'),
    h('option', { value: 'late' }, 'A deployment run is late'),
    h('option', { value: 'sla' }, 'A run misses its SLA'));
  const states = input('on.state', { value: 'Failed, Crashed, TimedOut' });
  const late = input('on.late', { placeholder: '15m' });
  const maxDuration = input('on.sla.max_duration', { placeholder: '2h' });
  const deadline = input('on.sla.deadline', { placeholder: '30h' });
  const flow = input('flow', { placeholder: 'any flow' });
  const deployment = input('deployment', { placeholder: 'any deployment' });
  const tags = input('tags', { placeholder: 'prod, finance' });
  const webhook = input('webhook', { type: 'url', placeholder: 'https://example.com/hook' });
  const slack = input('slack', { type: 'url', placeholder: 'https://hooks.slack.com/services/…' });
  const pauseAfter = h('input', { type: 'number', name: 'pause_after', min: '1', step: '1', 'data-testid': 'automation-pause-after' });
  const fields = [
    field('name', 'Name', name),
    field('on', 'When', kind),
    field('on.state', 'States', states, 'Comma-separated: Failed, Crashed, TimedOut, Cancelled, Completed…'),
    field('on.late', 'Late by more than', late, 'A grace like 15m, 1h.'),
    field('on.sla.max_duration', 'Longer than', maxDuration, 'From its start; empty: no limit.'),
    field('on.sla.deadline', 'Not done this long after its logical date', deadline),
    field('flow', 'Flow', flow),
    field('deployment', 'Deployment', deployment),
    field('tags', 'Tags (all of)', tags),
    field('webhook', 'Webhook URL', webhook, 'Gets the notification as JSON.'),
    field('slack', 'Slack incoming webhook URL', slack),
    field('pause_after', 'Pause the deployment after N failures in a row', pauseAfter, 'The circuit breaker; empty: never.'),
  ];
  const byName = Object.fromEntries(fields.map((f) => [f.name, f]));
  const shownFor = { state: ['on.state', 'pause_after'], late: ['on.late'], sla: ['on.sla.max_duration', 'on.sla.deadline'] };
  const trigger = ['on.state', 'on.late', 'on.sla.max_duration', 'on.sla.deadline', 'pause_after'];
  const showKind = () => {
    for (const n of trigger) byName[n].el.hidden = !shownFor[kind.value].includes(n);
  };
  kind.addEventListener('change', showKind);
  showKind();
  const general = h('p', { class: 'callout', role: 'alert', 'data-testid': 'form-error' });
  const shown = errors(fields, general);
  const submit = h('button', { type: 'submit', class: 'primary', 'data-testid': 'automation-submit' }, 'Make automation');
  const form = h('form', { class: 'panel inline-form', novalidate: true, 'data-testid': 'automation-form', 'data-needs': 'operate', 'aria-labelledby': 'automation-form-title' },
    h('h2', { id: 'automation-form-title' }, 'New automation'),
    h('div', { class: 'fields row' }, fields.map((f) => f.el)), general,
    h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    shown.clear();
    let on;
    if (kind.value === 'state') on = { state: list(states.value) };
    else if (kind.value === 'late') on = { late: late.value.trim() };
    else {
      on = { sla: {} };
      if (maxDuration.value.trim()) on.sla.max_duration = maxDuration.value.trim();
      if (deadline.value.trim()) on.sla.deadline = deadline.value.trim();
    }
    // Which input each notify[i] the server may name came from.
    const notify = [];
    const targetField = [];
    if (webhook.value.trim()) { notify.push({ webhook: webhook.value.trim() }); targetField.push('webhook'); }
    if (slack.value.trim()) { notify.push({ slack: slack.value.trim() }); targetField.push('slack'); }
    const request = { name: name.value.trim(), on, tags: list(tags.value), notify };
    if (flow.value.trim()) request.flow = flow.value.trim();
    if (deployment.value.trim()) request.deployment = deployment.value.trim();
    if (kind.value === 'state' && pauseAfter.value) request.pause_after = Number(pauseAfter.value);
    submit.disabled = true;
    try {
      await send('POST', '/api/automations', request);
      form.reset();
      showKind();
      made(request.name);
    } catch (error) {
      const target = /^notify\[(\d+)\]/.exec(error.field || '');
      const fieldName = target ? targetField[Number(target[1])]
        : error.field === 'notify' ? 'webhook'
          : error.field === 'on' ? ({ state: 'on.state', late: 'on.late', sla: 'on.sla.max_duration' })[kind.value]
            : error.field === 'on.sla' ? 'on.sla.max_duration'
              : error.field;
      shown.show(fieldName, error.message);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

function when(on) {
  if (on.state) return `enters ${on.state.join(' | ')}`;
  if (on.late) return `late by ${on.late}`;
  if (on.sla) {
    const parts = [];
    if (on.sla.max_duration) parts.push(`longer than ${on.sla.max_duration}`);
    if (on.sla.deadline) parts.push(`not done ${on.sla.deadline} after its logical date`);
    return `SLA: ${parts.join(' or ')}`;
  }
  return '?';
}

function watching(rule) {
  const parts = [];
  if (rule.flow) parts.push(h('span', { class: 'tag' }, `flow ${rule.flow}`));
  if (rule.deployment) parts.push(h('span', { class: 'tag' }, `deployment ${rule.deployment}`));
  for (const tag of rule.tags || []) parts.push(h('span', { class: 'tag' }, `#${tag}`));
  return parts.length ? parts : h('span', { class: 'muted' }, 'every run');
}

function targets(rule) {
  return (rule.notify || []).map((t) => {
    const [format, url] = Object.entries(t)[0];
    return h('div', { class: 'small' }, h('span', { class: 'tag' }, format), ' ', h('span', { class: 'mono' }, url));
  });
}

function ruleRow(rule, remove) {
  const del = h('button', { type: 'button', class: 'danger small', 'data-needs': 'operate', 'data-testid': 'automation-delete',
    onclick: () => remove(rule, del) }, 'Delete');
  return h('tr', { 'data-testid': 'automation-row', 'data-name': rule.name },
    h('td', {}, h('strong', {}, rule.name), h('div', { class: 'muted small' }, `by ${rule.created_by} · ${relative(rule.created_at)}`)),
    h('td', { 'data-testid': 'automation-when' }, when(rule.on)),
    h('td', {}, watching(rule)),
    h('td', {}, targets(rule)),
    h('td', { 'data-testid': 'automation-breaker' }, rule.pause_after ? h('span', { class: 'tag breaker' }, `pause after ${rule.pause_after} failures`) : h('span', { class: 'muted' }, '—')),
    h('td', { class: 'actions-cell' }, del));
}

function attempts(d) {
  return d.attempts.map((a) => h('span', {
    class: `tag attempt ${a.error ? 'failed' : 'ok'}`, 'data-testid': 'delivery-attempt',
    title: `${time(a.at)} · ${a.millis} ms${a.error ? ` · ${a.error}` : ''}`,
  }, a.status_code ? String(a.status_code) : 'no answer'));
}

function deliveryRow(d) {
  return h('tr', { 'data-testid': 'delivery-row', 'data-status': d.status, 'data-automation': d.automation },
    h('td', { title: d.created_at }, time(d.created_at), h('div', { class: 'muted small' }, relative(d.created_at))),
    h('td', {}, d.automation),
    h('td', {}, h('span', { class: 'tag' }, d.format), ' ', h('span', { class: 'mono small' }, d.target)),
    h('td', { 'data-testid': 'delivery-status' }, h('span', { class: `tag delivery-${d.status}` }, d.status)),
    h('td', {}, attempts(d)),
    h('td', {}, d.flow_run_id ? h('a', { href: `#/runs/${d.flow_run_id}`, class: 'mono small' }, shortId(d.flow_run_id)) : null,
      h('div', { class: 'small' }, d.summary)));
}

/** `#/automations`: the rules, then their latest notifications. */
export function automationsPage({ root }) {
  let stopped = false;
  const notice = h('div', { role: 'alert' });
  const rules = h('div', { 'data-testid': 'automations' }, h('div', { class: 'loading' }, 'Loading automations…'));
  const deliveries = h('div', { 'data-testid': 'deliveries' });
  const form = ruleForm((made) => {
    notice.replaceChildren(h('p', { class: 'muted', 'data-testid': 'automation-made' }, `Made automation ${made}.`));
    load();
  });
  root.append(h('div', { class: 'page-head' }, h('h1', {}, 'Automations')), notice,
    h('section', { class: 'panel flush' }, rules), form,
    h('section', { class: 'panel flush' }, h('h2', {}, 'Latest notifications'), deliveries));

  async function remove(rule, button) {
    if (!confirm(`Delete automation ${rule.name}? Its notifications not yet sent are dropped.`)) return;
    button.disabled = true;
    try {
      await send('DELETE', `/api/automations/${encodeURIComponent(rule.name)}`);
    } catch (error) {
      notice.replaceChildren(h('div', { class: 'callout' }, `Could not delete ${rule.name}: ${error.message}`));
    }
    load();
  }

  async function load() {
    try {
      const [list, sent] = await Promise.all([get('/api/automations'), get('/api/deliveries', { limit: 100 })]);
      if (stopped) return;
      rules.replaceChildren(list.length
        ? h('div', { class: 'scroll-x' }, h('table', { class: 'list' },
          h('thead', {}, h('tr', {}, ['Rule', 'When', 'Runs', 'Notify', 'Circuit breaker', ''].map((t) => h('th', {}, t)))),
          h('tbody', {}, list.map((r) => ruleRow(r, remove)))))
        : h('p', { class: 'muted', 'data-testid': 'automations-empty' },
          'No automations. Make one below, or with ', h('code', {}, 'flowkit automations create --name etl-failures --on-state Failed --slack URL'), '.'));
      deliveries.replaceChildren(sent.length
        ? h('div', { class: 'scroll-x' }, h('table', { class: 'list' },
          h('thead', {}, h('tr', {}, ['When', 'Rule', 'To', 'Status', 'Tries', 'About'].map((t) => h('th', {}, t)))),
          h('tbody', {}, sent.map(deliveryRow))))
        : h('p', { class: 'muted' }, 'Nothing sent yet.'));
    } catch (error) {
      if (!stopped) rules.replaceChildren(h('p', { class: 'muted' }, `Could not load the automations: ${error.message}`));
    }
  }
  load();
  // Deliveries change on their own (retries): look again every few seconds.
  const every = setInterval(load, 3000);
  return () => { stopped = true; clearInterval(every); };
}
