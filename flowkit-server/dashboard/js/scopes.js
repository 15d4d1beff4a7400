// What the session's key may do. Buttons and forms that change something carry
// `data-needs="operate"` (or another scope); until `GET /api/keys/me` says the key holds that
// scope, a style rule hides them (see app.css): the page never shows an action the server
// would refuse with a 403. `<html data-scopes="read operate">` lists the scopes held.

import { get } from './api.js';

let loading = null;

/** Asks the server what the key may do and marks the page with it (again after a new key). */
export function loadScopes() {
  if (loading) return loading;
  loading = (async () => {
    try {
      const me = await get('/api/keys/me');
      const scopes = new Set(me.scopes || []);
      // `admin` may do everything.
      if (scopes.has('admin')) for (const s of ['read', 'write', 'operate']) scopes.add(s);
      document.documentElement.dataset.scopes = [...scopes].join(' ');
      document.documentElement.dataset.keyName = me.name || '';
    } catch {
      // Unknown: show nothing that acts.
      document.documentElement.dataset.scopes = '';
    } finally {
      loading = null;
    }
  })();
  return loading;
}

/** Whether the key may do what needs `scope` (as last learned). */
export function can(scope) {
  return (document.documentElement.dataset.scopes || '').split(' ').includes(scope);
}

window.addEventListener('flowkit:key', () => loadScopes());
