// The audit trail: who (which key) triggered, cancelled, paused, backfilled or changed keys,
// and when. `#/audit` lists it (filtered by `?deployment=`, `?run=`, `?actor=`); `auditPanel`
// shows what touched one run or deployment on its page.

import { get } from './api.js';
import { h, relative, shortId, time } from './dom.js';

const WORDS = {
  trigger: 'triggered a run',
  cancel: 'cancelled a run',
  retry: 'retried a run from failure',
  pause: 'paused',
  resume: 'resumed',
  backfill: 'started a backfill',
  backfill_cancel: 'cancelled a backfill',
  key_create: 'made a key',
  key_revoke: 'revoked a key',
  automation_create: 'made an automation',
  automation_delete: 'deleted an automation',
  limit_set: 'set a limit',
  limit_remove: 'removed a limit',
  deployment_register: 'registered a deployment',
};

function target(entry) {
  const parts = [];
  if (entry.deployment) parts.push(h('a', { href: `#/audit?deployment=${encodeURIComponent(entry.deployment)}` }, entry.deployment));
  if (entry.flow_run_id) parts.push(' ', h('a', { href: `#/runs/${entry.flow_run_id}`, class: 'mono' }, `run ${shortId(entry.flow_run_id)}`));
  if (entry.backfill_id) parts.push(' ', h('a', { href: `#/backfills/${entry.backfill_id}`, class: 'mono' }, `backfill ${shortId(entry.backfill_id)}`));
  return parts;
}

function rows(entries) {
  return entries.map((e) => h('tr', { 'data-testid': 'audit-entry', 'data-action': e.action, 'data-actor': e.actor },
    h('td', { title: e.at }, time(e.at), h('div', { class: 'muted small' }, relative(e.at))),
    h('td', { 'data-testid': 'audit-actor' }, h('span', { class: 'tag mono' }, e.actor)),
    h('td', { 'data-testid': 'audit-action' }, WORDS[e.action] || e.action),
    h('td', {}, target(e)),
    h('td', { class: 'muted' }, e.detail || '')));
}

function table(entries, empty) {
  if (!entries.length) return h('p', { class: 'muted', 'data-testid': 'audit-empty' }, empty);
  return h('div', { class: 'scroll-x' }, h('table', { class: 'list' },
    h('thead', {}, h('tr', {}, ['When', 'Key', 'Did', 'To', 'Detail'].map((t) => h('th', {}, t)))),
    h('tbody', {}, rows(entries))));
}

/** A panel of what operators did to one run (`{ run }`) or deployment (`{ deployment }`); it
 * reloads after every action taken from the page. */
export function auditPanel(filter) {
  const body = h('div');
  const el = h('section', { class: 'panel', 'data-testid': 'audit-panel' }, h('h2', {}, 'Who did what'), body);
  const load = async () => {
    try {
      const entries = await get('/api/audit', { ...filter, limit: 20 });
      body.replaceChildren(table(entries, 'No operator has acted on it.'));
    } catch (error) {
      body.replaceChildren(h('p', { class: 'muted' }, `Could not load the audit trail: ${error.message}`));
    }
  };
  // Once its page is gone, it stops listening.
  const reload = () => (el.isConnected ? load() : window.removeEventListener('flowkit:acted', reload));
  window.addEventListener('flowkit:acted', reload);
  load();
  return { el };
}

/** `#/audit`: the whole trail, newest first, filtered by the page's parameters. */
export function auditPage({ root, params }) {
  const filter = {};
  for (const k of ['deployment', 'run', 'backfill', 'actor']) if (params[k]) filter[k] = params[k];
  const body = h('div', { 'data-testid': 'audit' }, h('div', { class: 'loading' }, 'Loading the audit trail…'));
  const shown = Object.entries(filter).map(([k, v]) => h('span', { class: 'tag' }, `${k}: ${v}`));
  root.append(h('div', { class: 'page-head' }, h('h1', {}, 'Audit'), shown,
    shown.length ? h('a', { href: '#/audit', class: 'small' }, 'Show everything') : null),
  h('section', { class: 'panel flush' }, body));
  let stopped = false;
  (async () => {
    try {
      const entries = await get('/api/audit', { ...filter, limit: 500 });
      if (!stopped) body.replaceChildren(table(entries, 'Nothing recorded yet: no operator has triggered, cancelled, paused, backfilled or changed keys.'));
    } catch (error) {
      if (!stopped) body.replaceChildren(h('p', { class: 'muted' }, `Could not load the audit trail: ${error.message}`));
    }
  })();
  return () => { stopped = true; };
}
