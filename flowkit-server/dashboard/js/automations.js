// Automations: `#/automations` lists the rules (when each fires, which runs it watches, whom it
// tells, its circuit breaker) and their latest notifications with each try (status, error, time).
// Rules are made with the API or `flowkit automations create`; the page deletes them (operate).

import { get, send } from './api.js';
import { h, relative, shortId, time } from './dom.js';

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
  root.append(h('div', { class: 'page-head' }, h('h1', {}, 'Automations')), notice,
    h('section', { class: 'panel flush' }, rules),
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
          'No automations. Make one with ', h('code', {}, 'flowkit automations create --name etl-failures --on-state Failed --slack URL'), '.'));
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
