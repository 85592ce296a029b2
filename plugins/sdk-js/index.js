// orch-sdk: write orch plugins in JavaScript.
//
// A plugin is one ES module that declares itself with `plugin({...})` and re-exports the three
// functions of the `step` world:
//
//   import { plugin, log } from 'orch-sdk';
//   export const { describe, plan, run } = plugin({
//     name: 'greet', version: '0.1.0', description: 'Greet someone',
//     config: { type: 'object', properties: { who: { type: 'string' } }, required: ['who'],
//               additionalProperties: false },
//     step(cx, config) {
//       const greeting = `hello, ${config.who}`;
//       if (cx.change('run', 'greeting', greeting)) log.info(greeting);
//       cx.output('greeting', greeting);
//     },
//   });
//
// `orch plugin build` bundles the module with this file (esbuild, `orch:*` and `wasi:*` left
// to the host) and turns the bundle into a component with componentize-js.
//
// Everything at the top level of this file must stay free of side effects: the bundler then
// drops what a plugin does not use, and the import of a host interface goes with it, so a
// plugin that never opens postgres does not import `orch:plugin/postgres` (the host reads what
// a plugin may reach from its imports).

import { log as hostLog, progress as hostProgress } from 'orch:plugin/log@0.2.0';
import { handle as httpHandle } from 'wasi:http/outgoing-handler@0.2.12';
import {
  Fields,
  OutgoingRequest,
  OutgoingBody,
  IncomingBody,
  RequestOptions,
  httpErrorCode,
} from 'wasi:http/types@0.2.12';
import { open as postgresOpen } from 'orch:plugin/postgres@0.2.0';
import { open as kafkaOpen } from 'orch:plugin/kafka@0.2.0';
import { open as dockerOpen } from 'orch:plugin/docker@0.2.0';

const dispose = Symbol.dispose || Symbol.for('dispose');

// ---------------------------------------------------------------------------------------------
// Errors

/** Why a step did not succeed; the subclass tells the host whether to retry. */
export class StepError extends Error {
  constructor(message) {
    super(String(message));
    this.name = new.target.name;
  }
  /** The case of the WIT `step-error` variant. */
  get tag() {
    return 'failed';
  }
}

/** `with` is wrong: fix the workflow. Never retried. */
export class InvalidConfig extends StepError {
  get tag() {
    return 'invalid-config';
  }
}

/** A grant is missing. Never retried. */
export class Denied extends StepError {
  get tag() {
    return 'denied';
  }
}

/** A transient fault (network, lock, busy server). Retried per the step's `retry`. */
export class Retryable extends StepError {
  get tag() {
    return 'retryable';
  }
}

/** A permanent fault. Never retried. */
export class Failed extends StepError {}

const STEP_ERROR_TAGS = ['invalid-config', 'denied', 'retryable', 'failed'];

/** SpiderMonkey's report of a failed allocation (the host's memory cap was hit). */
function isOutOfMemory(e) {
  return e === 'out of memory' || (isErrorLike(e) && e.name === 'InternalError' && /out of memory/i.test(e.message));
}

/**
 * Anything thrown by a step body, as the WIT `step-error` the export throws. Running out of
 * memory is not turned into an error: it escapes, the component traps, and the host reports
 * the memory limit it enforced.
 */
function toWitError(e) {
  if (isOutOfMemory(e)) return new Error('out of memory');
  if (e instanceof StepError) return { tag: e.tag, val: e.message };
  if (e && typeof e === 'object' && STEP_ERROR_TAGS.includes(e.tag) && typeof e.val === 'string') {
    return { tag: e.tag, val: e.val };
  }
  const payload = payloadOf(e);
  if (payload !== undefined) {
    // A raw host call's error (a ComponentError).
    const converted = hostError('host', e);
    if (converted instanceof StepError) return { tag: converted.tag, val: converted.message };
    let detail;
    try {
      detail = toJson(payload);
    } catch {
      detail = String(payload);
    }
    return { tag: 'failed', val: `host error: ${detail}` };
  }
  if (isErrorLike(e)) {
    if (e.stack) safeLog('debug', `${e.name}: ${e.message}\n${e.stack}`);
    return { tag: 'failed', val: `${e.name}: ${e.message}` };
  }
  let text;
  try {
    text = typeof e === 'string' ? e : JSON.stringify(e, jsonSafe) ?? String(e);
  } catch {
    text = String(e);
  }
  return { tag: 'failed', val: `uncaught: ${text}` };
}

/** The payload of an error a host import threw (a `ComponentError`), or undefined. */
function payloadOf(e) {
  if (e && typeof e === 'object' && Object.prototype.hasOwnProperty.call(e, 'payload')) {
    return e.payload;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// JSON helpers

// Values made by the host bindings come from another realm: `instanceof` fails on them, so
// these checks use the built-in tags.
const tagOf = (v) => Object.prototype.toString.call(v);
const isBytes = (v) => tagOf(v) === '[object Uint8Array]';
const isArrayBuffer = (v) => tagOf(v) === '[object ArrayBuffer]';
const isErrorLike = (e) =>
  e instanceof Error || (e !== null && typeof e === 'object' && typeof e.message === 'string' && typeof e.name === 'string');

/** JSON.stringify replacer: BigInt as an exact number, bytes as an array. */
function jsonSafe(_key, value) {
  if (typeof value === 'bigint') return `\u0000bigint:${value}\u0000`;
  if (isBytes(value)) return Array.from(value);
  return value;
}

/** JSON text of `value`; BigInts become exact JSON numbers, undefined becomes null. */
function toJson(value) {
  const text = JSON.stringify(value === undefined ? null : value, jsonSafe);
  if (text === undefined) return 'null';
  return text.includes('\\u0000bigint:')
    ? text.replace(/"\\u0000bigint:(-?\d+)\\u0000"/g, '$1')
    : text;
}

function describeValue(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

// ---------------------------------------------------------------------------------------------
// Logging

function safeLog(level, message) {
  try {
    hostLog(level, message);
  } catch {
    // The host is gone or the line is not valid text: nothing better to do.
  }
}

function text(message) {
  if (typeof message === 'string') return message;
  if (isErrorLike(message)) return `${message.name}: ${message.message}`;
  try {
    return typeof message === 'object' ? toJson(message) : String(message);
  } catch {
    return String(message);
  }
}

function u64(n) {
  if (typeof n === 'bigint') return n < 0n ? 0n : n;
  const v = Math.floor(Number(n));
  return Number.isFinite(v) && v > 0 ? BigInt(v) : 0n;
}

/** Step logs; the host tags each line with run and step and masks secrets. */
export const log = {
  trace: (message) => hostLog('trace', text(message)),
  debug: (message) => hostLog('debug', text(message)),
  info: (message) => hostLog('info', text(message)),
  warn: (message) => hostLog('warn', text(message)),
  error: (message) => hostLog('error', text(message)),
  /** `current` of `total` units done (total unknown: leave it out or pass null). */
  progress: (current, total, message = '') =>
    hostProgress(u64(current), total == null ? undefined : u64(total), text(message)),
};

// ---------------------------------------------------------------------------------------------
// The step context

const CHANGE_KINDS = ['create', 'update', 'replace', 'delete', 'run', 'none'];

/** The call being served, for messages that depend on it (a write refused during a plan). */
let current = null;

/** What the body sees of its call, and where it records changes and outputs. */
export class Cx {
  #changes = [];
  #outputs = [];

  constructor(mode, context) {
    if (mode !== 'plan' && mode !== 'apply') throw new TypeError(`mode must be "plan" or "apply"`);
    const c = context || {};
    /** "plan" (`orch plan`: change nothing) or "apply" (`orch run`: converge). */
    this.mode = mode;
    this.runId = c.runId ?? '';
    this.workflow = c.workflow ?? '';
    this.stepId = c.stepId ?? '';
    /** 1 for the first try, 2 for the first retry, ... */
    this.attempt = c.attempt ?? 1;
    /** What started the run: cli, cron, http, webhook. */
    this.trigger = c.trigger ?? '';
  }

  /** True when the body should make its changes. */
  get applying() {
    return this.mode === 'apply';
  }

  /** Run id, workflow, step id, attempt and trigger as the host passed them. */
  get context() {
    const { runId, workflow, stepId, attempt, trigger } = this;
    return { runId, workflow, stepId, attempt, trigger };
  }

  /**
   * Declare a change. In a plan it is recorded and `false` comes back (do not make it); in a
   * run it is logged ("create role etl: CREATE ROLE etl") and `true` comes back (make it now).
   */
  change(kind, resource, detail = '') {
    if (!CHANGE_KINDS.includes(kind)) {
      throw new TypeError(`change kind ${JSON.stringify(kind)} is not one of ${CHANGE_KINDS.join(', ')}`);
    }
    const change = { kind, resource: String(resource), detail: detail == null ? '' : String(detail) };
    this.#changes.push(change);
    if (this.applying && kind !== 'none') safeLog('info', describeChange(change));
    return this.applying;
  }

  /** Publish `value` (any JSON value) as `steps.ID.outputs.NAME`; ignored in a plan. */
  output(name, value, options = {}) {
    if (!this.applying) return;
    this.#outputs.push({ name: String(name), value: toJson(value), secret: Boolean(options && options.secret) });
  }

  /** The changes declared so far. */
  get changes() {
    return this.#changes.map((c) => ({ ...c }));
  }

  /** The outputs published so far (values as JSON text). */
  get outputs() {
    return this.#outputs.map((o) => ({ ...o }));
  }
}

function describeChange({ kind, resource, detail }) {
  if (!detail || detail === resource) return `${kind} ${resource}`;
  return `${kind} ${resource}: ${detail}`;
}

// ---------------------------------------------------------------------------------------------
// Config checking: the declared JSON schema, minimally (types, required, unknown properties,
// enum, const; defaults filled in). `orch validate` checks the whole schema before a run.

function fieldName(path) {
  return path === '' ? 'the config' : `field \`${path}\``;
}

function typeMatches(type, v) {
  switch (type) {
    case 'null':
      return v === null;
    case 'boolean':
      return typeof v === 'boolean';
    case 'string':
      return typeof v === 'string';
    case 'integer':
      return typeof v === 'number' && Number.isInteger(v);
    case 'number':
      return typeof v === 'number';
    case 'array':
      return Array.isArray(v);
    case 'object':
      return v !== null && typeof v === 'object' && !Array.isArray(v);
    default:
      return true;
  }
}

function checkValue(schema, value, path) {
  if (!schema || typeof schema !== 'object') return value;
  const where = fieldName(path);
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((t) => typeMatches(t, value))) {
      throw new InvalidConfig(`${where}: expected ${types.join(' or ')}, got ${describeValue(value)}`);
    }
  }
  if (Array.isArray(schema.enum) && !schema.enum.some((e) => sameJson(e, value))) {
    throw new InvalidConfig(
      `${where}: ${toJson(value)} is not one of ${schema.enum.map((e) => toJson(e)).join(', ')}`,
    );
  }
  if ('const' in schema && !sameJson(schema.const, value)) {
    throw new InvalidConfig(`${where}: expected ${toJson(schema.const)}`);
  }
  if (Array.isArray(value) && schema.items && typeof schema.items === 'object') {
    return value.map((item, i) => checkValue(schema.items, item, `${path}[${i}]`));
  }
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    return checkObject(schema, value, path);
  }
  return value;
}

function checkObject(schema, value, path) {
  const props = schema.properties && typeof schema.properties === 'object' ? schema.properties : {};
  const out = { ...value };
  for (const [key, sub] of Object.entries(props)) {
    if (out[key] === undefined && sub && typeof sub === 'object' && 'default' in sub) {
      out[key] = structuredCloneJson(sub.default);
    }
  }
  for (const key of Array.isArray(schema.required) ? schema.required : []) {
    if (out[key] === undefined) {
      throw new InvalidConfig(`missing field \`${path ? `${path}.` : ''}${key}\``);
    }
  }
  const extra = schema.additionalProperties;
  for (const key of Object.keys(out)) {
    const sub = `${path ? `${path}.` : ''}${key}`;
    if (Object.prototype.hasOwnProperty.call(props, key)) {
      out[key] = checkValue(props[key], out[key], sub);
    } else if (extra === false) {
      const known = Object.keys(props);
      throw new InvalidConfig(
        `unknown field \`${sub}\`${known.length ? `, expected one of ${known.map((k) => `\`${k}\``).join(', ')}` : ''}`,
      );
    } else if (extra && typeof extra === 'object') {
      out[key] = checkValue(extra, out[key], sub);
    }
  }
  return out;
}

function sameJson(a, b) {
  return toJson(a) === toJson(b);
}

function structuredCloneJson(v) {
  return v === undefined ? undefined : JSON.parse(JSON.stringify(v));
}

/** Parse the config JSON and check it against `schema`; a mismatch is InvalidConfig. */
export function parseConfig(configJson, schema) {
  let value;
  try {
    value = configJson == null || configJson.trim() === '' ? {} : JSON.parse(configJson);
  } catch (e) {
    throw new InvalidConfig(`the config is not JSON: ${e.message}`);
  }
  if (value === null) value = {};
  return checkValue(schema, value, '');
}

// ---------------------------------------------------------------------------------------------
// Schema helpers (optional: a plain JSON schema object works as well)

const OPTIONAL = Symbol('optional');

function withOptions(base, options) {
  return { ...base, ...(options || {}) };
}

/** Tiny builders for the config's JSON schema; `object` makes fields without a default required. */
export const schema = {
  string: (options) => withOptions({ type: 'string' }, options),
  integer: (options) => withOptions({ type: 'integer' }, options),
  number: (options) => withOptions({ type: 'number' }, options),
  boolean: (options) => withOptions({ type: 'boolean' }, options),
  enum: (values, options) => withOptions({ type: 'string', enum: [...values] }, options),
  array: (items, options) => withOptions({ type: 'array', items }, options),
  map: (values, options) => withOptions({ type: 'object', additionalProperties: values }, options),
  /** Mark a field as not required (without giving it a default). */
  optional: (s) => Object.defineProperty({ ...s }, OPTIONAL, { value: true }),
  /** An object with these fields and no others (`additionalProperties: false`). */
  object: (properties, options) => {
    const required = Object.entries(properties)
      .filter(([, s]) => !(s && (s[OPTIONAL] || 'default' in s)))
      .map(([k]) => k);
    const base = { type: 'object', properties, additionalProperties: false };
    if (required.length) base.required = required;
    return withOptions(base, options);
  },
};

// ---------------------------------------------------------------------------------------------
// The plugin declaration

const EMPTY_SCHEMA = { type: 'object', properties: {}, additionalProperties: false };

/**
 * Declare a plugin; returns the three functions the `step` world exports:
 * `export const { describe, plan, run } = plugin({...})`.
 */
export function plugin(definition) {
  const def = definition || {};
  if (typeof def.name !== 'string' || def.name === '') throw new TypeError('plugin: `name` is required');
  if (typeof def.step !== 'function') throw new TypeError('plugin: `step(cx, config)` is required');
  const configSchema = def.config ?? EMPTY_SCHEMA;
  const published =
    configSchema && typeof configSchema === 'object' && !('$schema' in configSchema)
      ? { $schema: 'https://json-schema.org/draft/2020-12/schema', ...configSchema }
      : configSchema;
  const schemaText = JSON.stringify(published);
  const info = {
    name: def.name,
    version: def.version ?? '0.1.0',
    description: def.description ?? '',
    configSchema: schemaText,
  };

  function call(mode, ctx, configJson, pick) {
    const cx = new Cx(mode, ctx);
    const finish = () => {
      if (current === cx) current = null;
    };
    try {
      const config = parseConfig(configJson, configSchema);
      current = cx;
      const result = def.step(cx, config);
      if (result && typeof result.then === 'function') {
        return result.then(
          () => {
            finish();
            return pick(cx);
          },
          (e) => {
            finish();
            throw toWitError(e);
          },
        );
      }
      finish();
      return pick(cx);
    } catch (e) {
      finish();
      throw toWitError(e);
    }
  }

  return {
    describe: () => ({ ...info }),
    plan: (ctx, config) => call('plan', ctx, config, (cx) => cx.changes),
    run: (ctx, config) => call('apply', ctx, config, (cx) => cx.outputs),
  };
}

// ---------------------------------------------------------------------------------------------
// HTTP over the gated wasi:http outgoing-handler

const DEFAULT_MAX_BYTES = 16 * 1024 * 1024;
const SAFE_METHODS = ['GET', 'HEAD', 'OPTIONS'];
// The transient wasi:http error codes, the same table in the Rust and Python SDKs.
const RETRYABLE_CODES = [
  'DNS-timeout',
  'DNS-error',
  'destination-unavailable',
  'connection-refused',
  'connection-terminated',
  'connection-timeout',
  'connection-read-timeout',
  'connection-write-timeout',
  'connection-limit-reached',
  'HTTP-response-incomplete',
  'HTTP-response-timeout',
];

/** A whole HTTP response. */
export class HttpResponse {
  constructor(url, status, headerList, body) {
    /** The URL requested. */
    this.url = url;
    /** The status code. */
    this.status = status;
    /** Every header as [name, value], names lower-cased, in the order received. */
    this.headerList = headerList;
    /** Headers by lower-cased name; repeated headers joined with ", ". */
    this.headers = {};
    for (const [name, value] of headerList) {
      this.headers[name] = name in this.headers ? `${this.headers[name]}, ${value}` : value;
    }
    /** The body, read fully. */
    this.body = body;
  }
  /** True for a 2xx status. */
  get ok() {
    return this.status >= 200 && this.status < 300;
  }
  /** One header's value (case-insensitive), or undefined. */
  header(name) {
    return this.headers[String(name).toLowerCase()];
  }
  /** The body as UTF-8 text. */
  text() {
    return new TextDecoder().decode(this.body);
  }
  /** The body parsed as JSON; a body that is not JSON is Failed. */
  json() {
    try {
      return JSON.parse(this.text());
    } catch (e) {
      throw new Failed(`response of ${this.url} (status ${this.status}) is not JSON: ${e.message}`);
    }
  }
  /** This response if 2xx; 429 and 5xx are Retryable, anything else Failed. */
  raiseForStatus() {
    if (this.ok) return this;
    const snippet = this.text().slice(0, 200);
    const message = `${this.url} answered ${this.status}${snippet ? `: ${snippet}` : ''}`;
    if (this.status === 429 || this.status >= 500) throw new Retryable(message);
    throw new Failed(message);
  }
}

function errorCodeText(code) {
  if (!code || typeof code !== 'object') return String(code);
  if (code.val === undefined) return code.tag;
  let detail;
  try {
    detail = toJson(code.val);
  } catch {
    detail = String(code.val);
  }
  return `${code.tag} ${detail}`;
}

function origin(scheme, authority) {
  const a = authority.toLowerCase();
  if (scheme === 'http' && a.endsWith(':80')) return `http://${a.slice(0, -3)}`;
  if (scheme === 'https' && a.endsWith(':443')) return `https://${a.slice(0, -4)}`;
  return `${scheme}://${a}`;
}

/** A wasi:http error code as the step error it means. */
function httpError(target, code) {
  const tag = code && code.tag;
  if (tag === 'HTTP-request-denied') {
    if (current && !current.applying && !SAFE_METHODS.includes(target.method)) {
      return new Denied(
        `${target.method} ${target.url} refused during plan: a plan may only read (GET, HEAD); ` +
          'send it when cx.change(...) returns true',
      );
    }
    const host = target.authority.replace(/:\d+$/, '');
    const connection = /^[A-Za-z0-9_-]+$/.test(target.authority) && host !== 'localhost'
      ? ` (or, if \`${host}\` is an http connection, allow = ["${host}"])`
      : '';
    return new Denied(
      `request to ${target.origin} denied by the host: the step's allow does not grant it; ` +
        `add allow = ["${target.origin}"] to the step${connection}`,
    );
  }
  if (tag === 'HTTP-response-body-size') {
    return new Failed(`response of ${target.url} is over the host's size limit (${errorCodeText(code)})`);
  }
  if (RETRYABLE_CODES.includes(tag)) {
    return new Retryable(`request to ${target.url} failed: ${errorCodeText(code)}`);
  }
  return new Failed(`request to ${target.url} failed: ${errorCodeText(code)}`);
}

function parseUrl(url) {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^#]*)/.exec(String(url));
  if (!m) throw new InvalidConfig(`\`${url}\` is not a URL (http://host/path)`);
  const scheme = m[1].toLowerCase();
  if (scheme !== 'http' && scheme !== 'https') {
    throw new InvalidConfig(`\`${url}\`: scheme \`${scheme}\` is not http or https`);
  }
  const authority = m[2];
  if (authority === '' || authority.includes('@')) {
    throw new InvalidConfig(`\`${url}\` needs a host (and no user:password@)`);
  }
  let path = m[3] || '/';
  if (path.startsWith('?')) path = `/${path}`;
  return { scheme, authority, path, origin: origin(scheme, authority) };
}

const METHODS = ['get', 'head', 'post', 'put', 'delete', 'connect', 'options', 'trace', 'patch'];

function encodeBody(body, headers) {
  if (body == null) return undefined;
  if (isBytes(body)) return body;
  if (isArrayBuffer(body)) return new Uint8Array(body);
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  if (typeof body === 'string') return new TextEncoder().encode(body);
  if (!headers.some(([n]) => n === 'content-type')) headers.push(['content-type', 'application/json']);
  return new TextEncoder().encode(toJson(body));
}

function headerPairs(headers) {
  if (headers == null) return [];
  const entries = Array.isArray(headers)
    ? headers
    : typeof headers.entries === 'function' && !(headers.constructor === Object)
      ? [...headers.entries()]
      : Object.entries(headers);
  return entries.map(([n, v]) => [String(n).toLowerCase(), String(v)]);
}

function nanos(ms) {
  return BigInt(Math.max(0, Math.round(Number(ms) * 1e6)));
}

function drop(resource) {
  try {
    if (resource) resource[dispose]();
  } catch {
    // Already consumed or dropped.
  }
}

/**
 * Send one request and read the whole response.
 * options: { headers, body, maxSize = 16 MiB, timeoutMs }
 */
function request(method, url, options = {}) {
  const opts = options || {};
  const m = String(method || 'GET').toUpperCase();
  const target = { method: m, url: String(url), ...parseUrl(url) };
  const headers = headerPairs(opts.headers);
  const bytes = encodeBody(opts.body, headers);
  if (bytes && !headers.some(([n]) => n === 'content-length')) {
    // A known length, not chunked: simple servers read bodies by Content-Length only.
    headers.push(['content-length', String(bytes.length)]);
  }
  const maxSize = opts.maxSize ?? DEFAULT_MAX_BYTES;

  const fields = new Fields();
  for (const [name, value] of headers) {
    try {
      fields.append(name, new TextEncoder().encode(value));
    } catch (e) {
      drop(fields);
      throw new InvalidConfig(`header \`${name}\`: ${errorCodeText(payloadOf(e) ?? e)}`);
    }
  }
  const outgoing = new OutgoingRequest(fields);
  let future;
  let body;
  try {
    const lower = m.toLowerCase();
    outgoing.setMethod(METHODS.includes(lower) ? { tag: lower } : { tag: 'other', val: m });
    outgoing.setScheme({ tag: target.scheme === 'https' ? 'HTTPS' : 'HTTP' });
    outgoing.setAuthority(target.authority);
    outgoing.setPathWithQuery(target.path);
  } catch {
    drop(outgoing);
    throw new InvalidConfig(`\`${url}\`: not a valid ${m} request`);
  }
  let requestOptions;
  if (opts.timeoutMs != null) {
    requestOptions = new RequestOptions();
    const ns = nanos(opts.timeoutMs);
    requestOptions.setConnectTimeout(ns);
    requestOptions.setFirstByteTimeout(ns);
    requestOptions.setBetweenBytesTimeout(ns);
  }
  body = outgoing.body();
  try {
    future = httpHandle(outgoing, requestOptions);
  } catch (e) {
    drop(body);
    throw httpError(target, payloadOf(e) ?? e);
  }
  try {
    if (bytes && bytes.length) {
      const stream = body.write();
      try {
        for (let i = 0; i < bytes.length; i += 4096) {
          stream.blockingWriteAndFlush(bytes.subarray(i, i + 4096));
        }
      } catch (e) {
        const p = payloadOf(e);
        const detail = p && p.tag === 'last-operation-failed' ? ioErrorText(p.val) : errorCodeText(p ?? e);
        throw new Retryable(`sending the body to ${target.url}: ${detail}`);
      } finally {
        drop(stream);
      }
    }
    OutgoingBody.finish(body, undefined);
    body = undefined;
  } catch (e) {
    drop(body);
    // The response may say why the body could not be sent (a denial, a refused connection).
    const early = settled(future, target);
    drop(future);
    if (early instanceof StepError) throw early;
    throw e instanceof StepError ? e : httpError(target, payloadOf(e) ?? e);
  }
  const response = settled(future, target);
  drop(future);
  if (response instanceof StepError) throw response;
  return readResponse(target, response, maxSize);
}

/** Wait for the response; the incoming-response, or a StepError. */
function settled(future, target) {
  const pollable = future.subscribe();
  pollable.block();
  drop(pollable);
  const got = future.get();
  if (got === undefined) return new Failed(`no response from ${target.url}`);
  if (got.tag === 'err') return new Failed(`response of ${target.url} taken twice`);
  if (got.val.tag === 'err') return httpError(target, got.val.val);
  return got.val.val;
}

function ioErrorText(err) {
  try {
    const code = httpErrorCode(err);
    if (code) return errorCodeText(code);
    return err.toDebugString();
  } catch {
    return 'stream error';
  } finally {
    drop(err);
  }
}

function readResponse(target, response, maxSize) {
  let incoming;
  try {
    const status = response.status();
    const fields = response.headers();
    const dec = new TextDecoder();
    const headerList = fields.entries().map(([n, v]) => [n.toLowerCase(), dec.decode(v)]);
    drop(fields);
    incoming = response.consume();
    const body = readBody(target, incoming, maxSize);
    const trailers = IncomingBody.finish(incoming);
    incoming = undefined;
    drop(trailers);
    return new HttpResponse(target.url, status, headerList, body);
  } finally {
    drop(incoming);
    drop(response);
  }
}

function readBody(target, incoming, maxSize) {
  const stream = incoming.stream();
  const chunks = [];
  let total = 0;
  try {
    for (;;) {
      let chunk;
      try {
        chunk = stream.blockingRead(65536n);
      } catch (e) {
        const p = payloadOf(e);
        if (p && p.tag === 'closed') break;
        if (p && p.tag === 'last-operation-failed') {
          let code;
          try {
            code = httpErrorCode(p.val);
          } catch {
            code = undefined;
          }
          if (code) {
            drop(p.val);
            throw httpError(target, code);
          }
          const detail = ioErrorText(p.val);
          if (/size exceeds limit/.test(detail)) {
            throw new Failed(`response of ${target.url} is over the host's size limit: ${detail}`);
          }
          throw new Retryable(`reading the response of ${target.url}: ${detail}`);
        }
        throw e;
      }
      total += chunk.length;
      if (total > maxSize) {
        throw new Failed(`response of ${target.url} is larger than ${maxSize} bytes (raise maxSize to read it)`);
      }
      chunks.push(chunk);
    }
  } finally {
    drop(stream);
  }
  const body = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    body.set(c, at);
    at += c.length;
  }
  return body;
}

/**
 * A small blocking HTTP client over the host's gated wasi:http. Every request is checked by the
 * host against the step's `allow`; `http://NAME/path` reaches the granted http connection NAME.
 */
export const http = {
  request,
  get: (url, options) => request('GET', url, options),
  head: (url, options) => request('HEAD', url, options),
  delete: (url, options) => request('DELETE', url, options),
  post: (url, body, options) => request('POST', url, { ...(options || {}), body }),
  put: (url, body, options) => request('PUT', url, { ...(options || {}), body }),
  patch: (url, body, options) => request('PATCH', url, { ...(options || {}), body }),
};

// ---------------------------------------------------------------------------------------------
// Host interface errors

function hostError(service, e) {
  if (e instanceof StepError) return e;
  const p = payloadOf(e);
  if (!p || typeof p !== 'object' || typeof p.tag !== 'string') return e;
  const m = p.val;
  switch (p.tag) {
    case 'denied':
      return new Denied(m);
    case 'unavailable':
      return new Retryable(`${service === 'docker' ? 'docker engine' : service} unavailable: ${m}`);
    case 'database':
    case 'broker': {
      const err = new Failed(`${service} error ${m.code}: ${m.message}`);
      err.code = m.code;
      return err;
    }
    case 'not-found':
      return new Failed(`not found: ${m}`);
    case 'engine':
      return new Failed(`docker engine: ${m}`);
    default:
      return new Failed(typeof m === 'string' ? m : `${service} error ${p.tag}`);
  }
}

function guard(service, f) {
  try {
    return f();
  } catch (e) {
    throw hostError(service, e);
  }
}

/**
 * A host resource whose every method throws SDK errors instead of the raw WIT error;
 * `adapt[method](...args)` may fill in defaults first. `close()` drops it now.
 */
function wrapResource(service, resource, adapt = {}) {
  return new Proxy(resource, {
    get(target, prop) {
      if (prop === 'close') return () => drop(target);
      if (prop === 'raw') return target;
      const value = target[prop];
      if (typeof value !== 'function') return value;
      const fill = Object.prototype.hasOwnProperty.call(adapt, prop) ? adapt[prop] : null;
      return (...args) => guard(service, () => value.apply(target, fill ? fill(...args) : args));
    },
  });
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

const TYPED = Symbol('orch-sdk.sql-value');

function typed(tag, val) {
  return { [TYPED]: true, tag, val };
}

function isSafeInt64(n) {
  return Number.isInteger(n) && Math.abs(n) < 2 ** 63;
}

/** A JS value as the WIT `value` variant. */
function toSqlValue(v) {
  if (v && v[TYPED]) return { tag: v.tag, val: v.val };
  if (v === null || v === undefined) return { tag: 'null' };
  switch (typeof v) {
    case 'boolean':
      return { tag: 'boolean', val: v };
    case 'bigint':
      return { tag: 'int', val: v };
    case 'number':
      return isSafeInt64(v) && !Object.is(v, -0) ? { tag: 'int', val: BigInt(v) } : { tag: 'float', val: v };
    case 'string':
      return { tag: 'text', val: v };
    default:
      break;
  }
  if (isBytes(v)) return { tag: 'bytes', val: v };
  if (isArrayBuffer(v)) return { tag: 'bytes', val: new Uint8Array(v) };
  if (v instanceof Date) return { tag: 'text', val: v.toISOString() };
  return { tag: 'json', val: toJson(v) };
}

/** The WIT `value` variant as a JS value. */
function fromSqlValue(v) {
  switch (v.tag) {
    case 'null':
      return null;
    case 'int':
      return v.val >= -9007199254740991n && v.val <= 9007199254740991n ? Number(v.val) : v.val;
    case 'json':
      try {
        return JSON.parse(v.val);
      } catch {
        return v.val;
      }
    default:
      return v.val;
  }
}

function toParams(params) {
  if (params == null) return [];
  if (!Array.isArray(params)) throw new TypeError('postgres: params must be an array');
  return params.map(toSqlValue);
}

function toBytes(data) {
  if (typeof data === 'string') return new TextEncoder().encode(data);
  if (isBytes(data)) return data;
  if (isArrayBuffer(data)) return new Uint8Array(data);
  throw new TypeError('copyIn: data must be a string or a Uint8Array');
}

/** One open session; statements run in autocommit unless `begin` was called. */
class Connection {
  #c;
  constructor(connection) {
    this.#c = connection;
  }
  /** Run a statement; the number of rows affected. */
  execute(sql, params = []) {
    return guard('postgres', () => Number(this.#c.execute(String(sql), toParams(params))));
  }
  /** Run a query; rows as objects (column → value). `limit`: at most that many rows. */
  query(sql, params = [], limit) {
    const rows = this.queryRaw(sql, params, limit);
    return rows.rows.map((row) => {
      const o = {};
      rows.columns.forEach((c, i) => {
        o[c] = row[i];
      });
      return o;
    });
  }
  /** The first row of a query as an object, or null when there is none. */
  queryOne(sql, params = []) {
    const rows = this.query(sql, params, 1);
    return rows.length ? rows[0] : null;
  }
  /** Run a query; { columns, rows } with rows as arrays of values. */
  queryRaw(sql, params = [], limit) {
    const max = typeof limit === 'object' && limit !== null ? limit.limit : limit;
    const r = guard('postgres', () => this.#c.query(String(sql), toParams(params), max == null ? undefined : max));
    return { columns: r.columns, rows: r.rows.map((row) => row.map(fromSqlValue)) };
  }
  /** `COPY ... FROM STDIN` with `data` in the statement's format; the number of rows copied. */
  copyIn(sql, data) {
    return guard('postgres', () => Number(this.#c.copyIn(String(sql), toBytes(data))));
  }
  /**
   * `COPY … FROM STDIN` (text format) of `rows`, objects keyed by column; the number copied.
   * The fast way to bulk load: the host encodes the rows and streams them to the server.
   * `columns` is the statement's column order; it defaults to the first row's keys. A missing
   * key is NULL; a key not in `columns` fails the call and nothing is copied. `rows` may also
   * be their JSON text, with `columns` given.
   */
  copyJson(sql, rows, columns) {
    let text;
    if (typeof rows === 'string') {
      if (columns == null) throw new TypeError('copyJson: pass `columns` when `rows` is JSON text');
      text = rows;
    } else if (Array.isArray(rows)) {
      if (columns == null) columns = rows.length ? Object.keys(rows[0] ?? {}) : [];
      text = toJson(rows);
    } else {
      throw new TypeError('copyJson: rows must be an array of objects or their JSON text');
    }
    if (!Array.isArray(columns)) throw new TypeError('copyJson: columns must be an array of names');
    const names = columns.map(String);
    return guard('postgres', () => Number(this.#c.copyJson(String(sql), names, text)));
  }
  begin() {
    guard('postgres', () => this.#c.begin());
  }
  commit() {
    guard('postgres', () => this.#c.commit());
  }
  rollback() {
    guard('postgres', () => this.#c.rollback());
  }
  /** Run `f(connection)` in a transaction: commit when it returns, roll back when it throws. */
  transaction(f) {
    this.begin();
    let result;
    try {
      result = f(this);
    } catch (e) {
      try {
        this.rollback();
      } catch {
        // The first error is the one to report.
      }
      throw e;
    }
    this.commit();
    return result;
  }
  /** Close the session now (it is closed when the call ends anyway). */
  close() {
    drop(this.#c);
  }
}

/** PostgreSQL through a connection the step's `allow` grants by name. */
export const postgres = {
  open: (name) => new Connection(guard('postgres', () => postgresOpen(String(name)))),
  /** Bind as int8 (a BigInt or an integral number). */
  int: (v) => typed('int', BigInt(v)),
  /** Bind as float8 even when the number is integral (1.0). */
  float: (v) => typed('float', Number(v)),
  text: (v) => typed('text', String(v)),
  bytes: (v) => typed('bytes', toBytes(v)),
  /** Bind as jsonb (any JSON value; plain objects and arrays are bound this way already). */
  json: (v) => typed('json', toJson(v)),
  null: () => typed('null', undefined),
};

// ---------------------------------------------------------------------------------------------
// Kafka and Docker: the host resources, with errors as SDK exceptions

function maybeBytes(v) {
  return v == null ? undefined : toBytes(v);
}

/** A record to produce; key and value may be strings, headers an object or a list. */
function outgoingRecord(r) {
  const headers = r.headers == null ? [] : Array.isArray(r.headers) ? r.headers : Object.entries(r.headers).map(([key, value]) => ({ key, value }));
  return {
    key: maybeBytes(r.key),
    value: maybeBytes(r.value),
    headers: headers.map((h) => ({ key: String(h.key), value: toBytes(h.value) })),
    partition: r.partition ?? undefined,
  };
}

/** Labels, options: a list of { key, value } or an object. */
function pairs(x) {
  if (x == null) return [];
  if (Array.isArray(x)) return x;
  return Object.entries(x).map(([key, value]) => ({ key, value: String(value) }));
}

/** A container spec with the engine's defaults for what `spec` leaves out. */
function containerSpec(spec) {
  const s = spec || {};
  const env = s.env == null ? [] : Array.isArray(s.env) ? s.env : Object.entries(s.env).map(([k, v]) => `${k}=${v}`);
  return {
    command: undefined,
    entrypoint: undefined,
    env: [],
    labels: [],
    ports: [],
    mounts: [],
    networks: [],
    restart: 'no',
    healthcheck: undefined,
    user: undefined,
    workingDir: undefined,
    hostname: undefined,
    privileged: false,
    networkMode: undefined,
    pidMode: undefined,
    capAdd: [],
    deviceRequests: [],
    ...s,
    env,
    labels: pairs(s.labels),
  };
}

/** Kafka through a connection the step's `allow` grants by name. */
export const kafka = {
  open: (name) => wrapResource('kafka', guard('kafka', () => kafkaOpen(String(name))), {
    produce: (topic, records) => [topic, (records || []).map(outgoingRecord)],
    consume: (request) => [
      { group: undefined, offsets: [], maxRecords: 100, timeoutMs: 1000, commit: false, ...(request || {}) },
    ],
    createTopic: (name, partitions = 1, replicationFactor = 1, configs) => [
      name,
      partitions,
      replicationFactor,
      configs == null ? [] : Array.isArray(configs) ? configs : Object.entries(configs).map(([n, value]) => ({ name: n, value: String(value) })),
    ],
  }),
};

/** A Docker engine through a connection the step's `allow` grants by name. */
export const docker = {
  open: (name) => wrapResource('docker', guard('docker', () => dockerOpen(String(name))), {
    createContainer: (spec) => [containerSpec(spec)],
    checkContainer: (spec) => [containerSpec(spec)],
    ensureImage: (image, policy = 'missing') => [image, policy],
    listNetworks: (labels) => [pairs(labels)],
    listVolumes: (labels) => [pairs(labels)],
    listContainers: (labels) => [pairs(labels)],
    createNetwork: (name, labels) => [name, pairs(labels)],
    createVolume: (name, labels) => [name, pairs(labels)],
    stopContainer: (id, timeoutSecs = 10) => [id, timeoutSecs],
    removeContainer: (id, force = false) => [id, force],
    logs: (id, tail = 100) => [id, tail],
    listImages: (reference = '') => [reference],
  }),
};
