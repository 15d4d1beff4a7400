// Forms: labelled fields with a place for the server's message, and the "Run" form of a
// deployment drawn from the JSON Schema of its parameters.

import { h, uid } from './dom.js';

/**
 * A labelled field for `input`, answering to the server's `field` name: its message shows under
 * the input, tied to it with `aria-describedby`. A checkbox is drawn with its label on its right.
 */
export function field(name, label, input, hint) {
  input.id ||= uid('input');
  const hintEl = hint ? h('p', { class: 'hint', id: uid('hint') }, hint) : null;
  const error = h('p', { class: 'field-error', id: uid('error'), 'data-testid': 'field-error' });
  error.hidden = true;
  input.setAttribute('aria-describedby', [hintEl?.id, error.id].filter(Boolean).join(' '));
  const check = input.type === 'checkbox';
  const el = h('div', { class: check ? 'field check' : 'field', 'data-field': name },
    check ? h('label', { for: input.id }, input, h('span', {}, label)) : [h('label', { for: input.id }, label), input],
    hintEl, error);
  return {
    el,
    name,
    input,
    /** Shows `message` (null: clears it). */
    error(message) {
      error.textContent = message || '';
      error.hidden = !message;
      if (message) input.setAttribute('aria-invalid', 'true');
      else input.removeAttribute('aria-invalid');
    },
  };
}

/**
 * The errors of a form: `show(field, message)` puts the server's message under the field it
 * names (or the closest one: `parameters.items.0` under `parameters.items`), else at the top.
 */
export function errors(fields, general) {
  general.hidden = true;
  return {
    clear() {
      for (const f of fields) f.error(null);
      general.hidden = true;
      general.textContent = '';
    },
    show(name, message) {
      let target = null;
      for (const f of fields) {
        if (name && (name === f.name || name.startsWith(`${f.name}.`)) && (!target || f.name.length > target.name.length)) target = f;
      }
      if (target) {
        target.error(message);
        target.input.focus();
      } else {
        general.textContent = message;
        general.hidden = false;
      }
      return target;
    },
  };
}

const DEFS = /^#\/(\$defs|definitions)\/(.+)$/;

/** `node` with a local `$ref` (`#/$defs/Mode`) replaced by what it points to. */
function resolve(root, node) {
  for (let depth = 0; node && node.$ref && depth < 20; depth++) {
    const m = DEFS.exec(node.$ref);
    const key = m && decodeURIComponent(m[2]).replace(/~1/g, '/').replace(/~0/g, '~');
    const target = m ? root[m[1]]?.[key] : null;
    if (!target) return {};
    const { $ref, ...rest } = node;
    node = { ...target, ...rest };
  }
  return node && typeof node === 'object' ? node : {};
}

const isNull = (b) => b.type === 'null' || b.const === null || (Array.isArray(b.type) && b.type.length === 1 && b.type[0] === 'null');
const scalar = (v) => ['string', 'number', 'boolean'].includes(typeof v);

/**
 * What input a property of the schema gets: `{kind, nullable, node, options}`, kind one of
 * enum, boolean, integer, number, string, date, date-time, json (anything else).
 */
export function kindOf(root, property) {
  let node = resolve(root, property);
  let nullable = false;
  for (const key of ['anyOf', 'oneOf']) {
    if (!Array.isArray(node[key])) continue;
    const branches = node[key].map((b) => resolve(root, b));
    const rest = branches.filter((b) => !isNull(b));
    nullable ||= rest.length < branches.length;
    const consts = rest.map((b) => ('const' in b ? [b.const] : Array.isArray(b.enum) ? b.enum : null));
    if (rest.length > 1 && consts.every((c) => c && c.every(scalar))) {
      return { kind: 'enum', nullable, node, options: consts.flat() };
    }
    if (rest.length !== 1) return { kind: 'json', nullable, node };
    const { [key]: _, ...outer } = node;
    node = { ...rest[0], ...outer };
  }
  let types = node.type == null ? [] : [].concat(node.type);
  if (types.includes('null')) {
    nullable = true;
    types = types.filter((t) => t !== 'null');
  }
  if (Array.isArray(node.enum) || 'const' in node) {
    const values = Array.isArray(node.enum) ? node.enum : [node.const];
    const options = values.filter((v) => v !== null);
    nullable ||= options.length < values.length;
    return options.every(scalar) ? { kind: 'enum', nullable, node, options } : { kind: 'json', nullable, node };
  }
  if (types.length !== 1) return { kind: 'json', nullable, node };
  const [type] = types;
  if (type === 'string') {
    const kind = node.format === 'date' ? 'date' : node.format === 'date-time' ? 'date-time' : 'string';
    return { kind, nullable, node };
  }
  if (type === 'integer' || type === 'number' || type === 'boolean') return { kind: type, nullable, node };
  return { kind: 'json', nullable, node };
}

/** A time as a `datetime-local` input shows it (local time, to the second). */
export function localInput(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** One input for property `name`, filled with `value`; `read()` answers `{value}`, `{omit}` or `{error}`. */
function input(name, kind, required, value) {
  const has = value !== undefined && value !== null;
  const { nullable, node } = kind;
  const attrs = { name, 'data-param': name, 'data-kind': kind.kind };
  const blank = (fallback) => (nullable ? { value: null } : fallback);
  switch (kind.kind) {
    case 'enum': {
      const optional = nullable || !required;
      const el = h('select', attrs,
        optional ? h('option', { value: '' }, nullable ? 'null' : '(default)') : null,
        kind.options.map((v, i) => h('option', { value: String(i), selected: has && v === value }, String(v))));
      if (!has && !optional) el.value = '0';
      return { el, read: () => (el.value === '' ? blank({ omit: true }) : { value: kind.options[Number(el.value)] }) };
    }
    case 'boolean': {
      if (nullable) {
        const el = h('select', attrs, h('option', { value: '' }, 'null'),
          h('option', { value: 'true', selected: value === true }, 'true'),
          h('option', { value: 'false', selected: value === false }, 'false'));
        return { el, read: () => ({ value: el.value === '' ? null : el.value === 'true' }) };
      }
      const el = h('input', { ...attrs, type: 'checkbox' });
      el.checked = value === true;
      return { el, read: () => ({ value: el.checked }) };
    }
    case 'integer':
    case 'number': {
      const el = h('input', { ...attrs, type: 'number', inputmode: kind.kind === 'integer' ? 'numeric' : 'decimal',
        step: kind.kind === 'integer' ? '1' : 'any', value: has ? String(value) : null });
      return {
        el,
        read: () => {
          if (el.validity.badInput) return { error: 'Enter a number.' };
          if (el.value === '') return blank({ omit: true });
          return { value: Number(el.value) };
        },
      };
    }
    case 'date':
    case 'date-time':
    case 'string': {
      const type = kind.kind === 'date' ? 'date' : kind.kind === 'date-time' ? 'datetime-local' : 'text';
      const shown = has ? (kind.kind === 'date-time' ? localInput(value) : String(value)) : null;
      const el = h('input', { ...attrs, type, step: type === 'datetime-local' ? '1' : null, value: shown,
        placeholder: type === 'text' && node.format ? node.format : null, autocomplete: 'off' });
      return {
        el,
        read: () => {
          if (el.validity.badInput) return { error: 'Enter a complete date.' };
          if (el.value === '') return blank(kind.kind === 'string' && required ? { value: '' } : { omit: true });
          if (kind.kind === 'date-time') return { value: new Date(el.value).toISOString() };
          return { value: el.value };
        },
      };
    }
    default: {
      const el = h('textarea', { ...attrs, rows: '3', spellcheck: 'false', class: 'mono' });
      el.value = has ? JSON.stringify(value, null, 2) : '';
      return {
        el,
        read: () => {
          if (el.value.trim() === '') return blank({ omit: true });
          try {
            return { value: JSON.parse(el.value) };
          } catch (error) {
            return { error: `Not valid JSON: ${error.message}` };
          }
        },
      };
    }
  }
}

const KIND_HINT = { json: 'JSON', integer: 'integer', number: 'number', date: 'date', 'date-time': 'date and time (local)' };

/**
 * The fields of a deployment's parameters, drawn from `schema` (a JSON Schema, or null: it takes
 * none) and filled from `defaults`. `read()` answers `{parameters}` or `{invalid: true}` (after
 * showing what is wrong under each field).
 */
export function parameterFields(schema, defaults) {
  const given = defaults && typeof defaults === 'object' ? defaults : {};
  if (!schema) return { el: h('p', { class: 'muted', 'data-testid': 'no-parameters' }, 'This deployment takes no parameters.'), fields: [], read: () => ({}) };
  const root = resolve(schema, schema);
  const properties = root.properties && typeof root.properties === 'object' ? root.properties : null;
  const entries = [];
  if (!properties) {
    // A schema that is not an object of properties: the parameters as one JSON document.
    const one = input('parameters', { kind: 'json', nullable: false, node: root }, false, defaults ?? undefined);
    entries.push({ name: null, one, f: field('parameters', 'Parameters (JSON)', one.el, 'A JSON object.') });
  } else {
    const required = new Set(Array.isArray(root.required) ? root.required : []);
    // Required first (the server may not keep the schema's order of properties).
    const names = Object.keys(properties).sort((a, b) => Number(required.has(b)) - Number(required.has(a)));
    for (const name of names) {
      const property = properties[name];
      const kind = kindOf(schema, property);
      const value = name in given ? given[name] : kind.node.default ?? property?.default;
      const one = input(name, kind, required.has(name), value);
      const words = [KIND_HINT[kind.kind], kind.nullable ? 'may be null' : null, required.has(name) ? 'required' : null].filter(Boolean).join(', ');
      const hint = [kind.node.description || property?.description, words].filter(Boolean).join(' · ');
      const label = [h('span', { class: 'mono' }, name), kind.node.title ? h('span', { class: 'muted' }, ` ${kind.node.title}`) : null,
        required.has(name) ? h('span', { class: 'required', 'aria-hidden': 'true' }, ' *') : null];
      entries.push({ name, one, f: field(`parameters.${name}`, label, one.el, hint) });
    }
  }
  return {
    el: h('div', { class: 'fields' }, entries.map((e) => e.f.el)),
    fields: entries.map((e) => e.f),
    read() {
      let invalid = false;
      let parameters = entries.length && entries[0].name === null ? undefined : {};
      for (const { name, one, f } of entries) {
        const answer = one.read();
        if (answer.error) {
          f.error(answer.error);
          if (!invalid) one.el.focus();
          invalid = true;
        } else if (!answer.omit) {
          if (name === null) parameters = answer.value;
          else parameters[name] = answer.value;
        }
      }
      return invalid ? { invalid } : { parameters };
    },
  };
}
