// The server's API: JSON reads and writes with the session's API key, and the live event stream.
// Paths are given as `/api/...` and fetched relative to the page, so the dashboard works under
// a prefix (`flowkit-server --base-path /flowkit` serves it at `/flowkit/`). After a change
// (any request but GET) the window gets a `flowkit:acted` event; after a new key, `flowkit:key`.

const KEY = 'flowkit.apiKey';
let prompt = null;
// The key prompt cannot be dismissed with Escape: nothing works without the key.
document.getElementById('key-dialog')?.addEventListener('cancel', (event) => event.preventDefault());

class ApiError extends Error {
  /** `field` names the part of the request the server blamed (`parameters.day`), if any. */
  constructor(status, message, field = null) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

/** `/api/x` as a URL relative to the page: `api/x`. */
const relative = (path) => path.replace(/^\/+/, '');

function authHeaders() {
  const key = sessionStorage.getItem(KEY);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v != null && v !== '') q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : '';
}

/** Asks for the API key once (concurrent callers share the prompt); resolves when given. */
function askForKey() {
  if (prompt) return prompt;
  const dialog = document.getElementById('key-dialog');
  const input = document.getElementById('key-input');
  document.getElementById('key-error').hidden = !sessionStorage.getItem(KEY);
  input.value = '';
  prompt = new Promise((resolve) => {
    const form = document.getElementById('key-form');
    const submit = (event) => {
      event.preventDefault();
      if (!input.value) return;
      sessionStorage.setItem(KEY, input.value.trim());
      form.removeEventListener('submit', submit);
      dialog.close();
      prompt = null;
      window.dispatchEvent(new Event('flowkit:key'));
      resolve();
    };
    form.addEventListener('submit', submit);
    dialog.showModal();
  });
  return prompt;
}

/** One request; a 401 asks for the key and tries again. Answers the JSON body (null if none). */
async function request(method, url, body) {
  for (;;) {
    let response;
    try {
      response = await fetch(relative(url), body === undefined
        ? { method, headers: authHeaders() }
        : { method, headers: { ...authHeaders(), 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    } catch (error) {
      throw new ApiError(0, `The server did not answer (${error.message}). Is flowkit-server still running?`);
    }
    if (response.status === 401) {
      await askForKey();
      continue;
    }
    if (!response.ok) {
      let message = response.statusText;
      let field = null;
      try {
        const answer = await response.json();
        message = answer.error || message;
        field = answer.field || null;
      } catch { /* not JSON */ }
      throw new ApiError(response.status, message, field);
    }
    const text = await response.text();
    if (method !== 'GET') window.dispatchEvent(new Event('flowkit:acted'));
    return text ? JSON.parse(text) : null;
  }
}

/** GET a JSON document of the API. */
export function get(path, params) {
  return request('GET', path + query(params));
}

/** POST, PATCH… a JSON body; answers the server's JSON. An error carries the server's `field`. */
export function send(method, path, body = {}) {
  return request(method, path, body);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Follows `/api/events/stream` (Server-Sent Events, read with fetch so the key goes in a header,
 * not the URL). Calls `onEvent(event)` per event, `onEvent(null)` when events were missed, and
 * `onStatus('live' | 'reconnecting')`; reconnects with backoff. Returns a function that stops it.
 */
export function follow(params, onEvent, onStatus) {
  let stopped = false;
  let controller = null;
  (async () => {
    let delay = 500;
    let connectedBefore = false;
    while (!stopped) {
      controller = new AbortController();
      try {
        const response = await fetch(relative(`/api/events/stream${query(params)}`), {
          headers: { ...authHeaders(), Accept: 'text/event-stream' },
          signal: controller.signal,
        });
        if (response.status === 401) { await askForKey(); continue; }
        if (!response.ok || !response.body) throw new Error(response.statusText);
        onStatus('live');
        // Events may have been missed while disconnected: let the page reload.
        if (connectedBefore) onEvent(null);
        connectedBefore = true;
        delay = 500;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r/g, '');
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let type = 'message';
            const data = [];
            for (const line of block.split('\n')) {
              if (line.startsWith('event:')) type = line.slice(6).trim();
              else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
            }
            if (type === 'event') onEvent(JSON.parse(data.join('\n')));
            else if (type === 'lagged') onEvent(null);
          }
        }
      } catch {
        if (stopped) return;
      }
      if (stopped) return;
      onStatus('reconnecting');
      await sleep(delay);
      delay = Math.min(delay * 2, 10000);
    }
  })();
  return () => { stopped = true; controller?.abort(); };
}
