// The dashboard's shell: routes (`#/runs`, `#/runs/<id>`, `#/runs/<id>/tasks/<task run id>`, `#/flows`,
// `#/deployments`, `#/backfills`, `#/backfills/<id>`, `#/workers`, `#/limits`, `#/automations`, `#/audit`), the live indicator, the
// theme, and what the key may do (`scopes.js`).

import { follow } from './api.js';
import { runsPage } from './runs.js';
import { runPage } from './run.js';
import { taskPage } from './task.js';
import { homePage } from './home.js';
import { gridPage } from './grid.js';
import { flowsPage } from './flows.js';
import { deploymentsPage } from './deployments.js';
import { backfillPage, backfillsPage } from './backfills.js';
import { workersPage } from './workers.js';
import { limitsPage } from './limits.js';
import { auditPage } from './audit.js';
import { automationsPage } from './automations.js';
import { loadScopes } from './scopes.js';

const page = document.getElementById('page');
const live = document.getElementById('live');
let unmount = null;

/** Live events for the current page: `subscribe(params, onEvent)`; the indicator follows it. */
function subscribe(params, onEvent) {
  return follow(params, onEvent, (status) => {
    live.dataset.status = status;
    live.querySelector('.label').textContent = status === 'live' ? 'Live' : 'Reconnecting…';
  });
}

function parse() {
  const [path, search] = (location.hash.slice(1) || '/runs').split('?');
  const params = Object.fromEntries(new URLSearchParams(search || ''));
  const parts = path.split('/').filter(Boolean);
  return { parts, params };
}

function route() {
  if (unmount) unmount();
  unmount = null;
  page.replaceChildren();
  live.dataset.status = 'off';
  live.querySelector('.label').textContent = 'Offline';
  const { parts, params } = parse();
  const ctx = { root: page, params, subscribe };
  let section = 'runs';
  if (parts[0] === 'runs' && parts[1] && parts[2] === 'tasks' && parts[3]) {
    unmount = taskPage(ctx, parts[1], parts[3]);
  } else if (parts[0] === 'runs' && parts[1]) {
    unmount = runPage(ctx, parts[1]);
  } else if (parts[0] === 'home') {
    section = 'home';
    unmount = homePage(ctx);
  } else if (parts[0] === 'flows' && parts[1] && parts[2] === 'grid') {
    section = 'flows';
    unmount = gridPage(ctx, decodeURIComponent(parts[1]));
  } else if (parts[0] === 'flows') {
    section = 'flows';
    unmount = flowsPage(ctx);
  } else if (parts[0] === 'deployments') {
    section = 'deployments';
    unmount = deploymentsPage(ctx);
  } else if (parts[0] === 'backfills') {
    section = 'backfills';
    unmount = parts[1] ? backfillPage(ctx, parts[1]) : backfillsPage(ctx);
  } else if (parts[0] === 'automations') {
    section = 'automations';
    unmount = automationsPage(ctx);
  } else if (parts[0] === 'audit') {
    section = 'audit';
    unmount = auditPage(ctx);
  } else if (parts[0] === 'limits') {
    section = 'limits';
    unmount = limitsPage(ctx);
  } else if (parts[0] === 'workers') {
    section = 'workers';
    unmount = workersPage(ctx);
  } else {
    unmount = runsPage(ctx);
  }
  for (const link of document.querySelectorAll('[data-nav]')) {
    link.classList.toggle('active', link.dataset.nav === section);
    if (link.dataset.nav === section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

const THEMES = ['auto', 'light', 'dark'];
function applyTheme(theme) {
  if (theme === 'auto') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  document.getElementById('theme').textContent = `Theme: ${theme}`;
}
let theme = localStorage.getItem('flowkit.theme') || 'auto';
applyTheme(theme);
document.getElementById('theme').addEventListener('click', () => {
  theme = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length];
  localStorage.setItem('flowkit.theme', theme);
  applyTheme(theme);
});

window.addEventListener('hashchange', route);
loadScopes();
route();
