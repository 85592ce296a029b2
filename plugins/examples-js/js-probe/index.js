// js-probe: one JavaScript plugin with many behaviours, picked by `action`, for orch's
// end-to-end tests of the JS SDK and of the sandbox around a JS component.
//
//   hello   log a line, output `greeting`; plans a "run" change
//   http    GET `url`; output `status` and `body` (text)
//   pg      open postgres connection `connection`, run `query`; output `rows`
//   load    copy `rows` into a temporary table with copyJson; output `copied` and the table's rows
//   invalid throw InvalidConfig            retry  throw Retryable
//   secret  output `token` = `value`, marked secret
//   hog     allocate memory without bound  spin   loop forever
//   env     output what the sandbox shows of the environment (nothing)
//   create  declare "create thing NAME"; only when applying, output created = true
//   noop    nothing (the per-step cost benchmark)
//   fetch   GET `url` with fetch() from an async body; output `status` and `body`
import { plugin, log, http, postgres, schema, InvalidConfig, Retryable } from 'orch-sdk';

const ACTIONS = ['hello', 'http', 'pg', 'load', 'invalid', 'retry', 'secret', 'hog', 'spin', 'env', 'create', 'noop', 'fetch'];

export const { describe, plan, run } = plugin({
  name: 'js-probe',
  version: '0.2.0',
  description: 'Probe the JavaScript SDK and the sandbox (one behaviour per `action`)',
  config: schema.object({
    action: schema.enum(ACTIONS, { description: 'What to do' }),
    who: schema.string({ description: 'hello: who to greet', default: 'world' }),
    url: schema.string({ description: 'http: the URL to GET', default: 'http://127.0.0.1:8080/' }),
    connection: schema.string({ description: 'pg: the postgres connection', default: 'db' }),
    query: schema.string({ description: 'pg: the query', default: 'select 1 as one' }),
    rows: schema.array({ type: 'object' }, { description: 'load: rows keyed by column', default: [] }),
    value: schema.string({ description: 'secret: the value to output', default: 's3cret-js-probe' }),
    name: schema.string({ description: 'create: the thing to create', default: 'probe' }),
  }),
  step(cx, config) {
    switch (config.action) {
      case 'hello': {
        const greeting = `hello, ${config.who}`;
        cx.change('run', 'greeting', greeting);
        log.info(`js-probe says ${greeting}`);
        cx.output('greeting', greeting);
        return;
      }
      case 'http': {
        if (cx.change('run', `GET ${config.url}`)) {
          const response = http.get(config.url);
          cx.output('status', response.status);
          cx.output('body', response.text());
        }
        return;
      }
      case 'pg': {
        if (cx.change('run', `query on ${config.connection}`, config.query)) {
          const db = postgres.open(config.connection);
          cx.output('rows', db.query(config.query));
        }
        return;
      }
      case 'load': {
        if (cx.change('run', `copy ${config.rows.length} rows on ${config.connection}`)) {
          const db = postgres.open(config.connection);
          db.execute('CREATE TEMP TABLE probe_load (id int8, name text, doc jsonb)');
          const copied = db.copyJson('COPY probe_load (id, name, doc) FROM STDIN', config.rows, ['id', 'name', 'doc']);
          cx.output('copied', copied);
          cx.output('rows', db.query('SELECT id, name, doc FROM probe_load ORDER BY id'));
        }
        return;
      }
      case 'invalid':
        throw new InvalidConfig('js-probe: invalid on purpose');
      case 'retry':
        throw new Retryable('js-probe: try again later');
      case 'secret':
        cx.change('run', 'secret');
        cx.output('token', config.value, { secret: true });
        return;
      case 'hog': {
        cx.change('run', 'hog memory');
        const kept = [];
        for (;;) kept.push(new Uint8Array(8 * 1024 * 1024).fill(7));
      }
      case 'spin': {
        cx.change('run', 'spin');
        let n = 0;
        for (;;) n = (n + 1) % 1000003;
      }
      case 'env': {
        const proc = globalThis.process;
        cx.output('env', proc && proc.env ? { ...proc.env } : {});
        cx.output('process', typeof proc);
        cx.output('argv', proc && Array.isArray(proc.argv) ? proc.argv : []);
        // StarlingMonkey has no file API: the root cannot even be asked for.
        cx.output('root', 'no filesystem API');
        return;
      }
      case 'noop':
        return;
      case 'fetch':
        // An async body: the SDK waits for the promise.
        return (async () => {
          if (cx.change('run', `fetch ${config.url}`)) {
            const response = await fetch(config.url);
            cx.output('status', response.status);
            cx.output('body', await response.text());
          }
        })();
      case 'create': {
        if (cx.change('create', `thing ${config.name}`, `make the thing ${config.name}`)) {
          cx.output('created', true);
        }
        return;
      }
      default:
        throw new InvalidConfig(`unknown action ${config.action}`);
    }
  },
});
