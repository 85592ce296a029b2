// {{name}}: an orch plugin in JavaScript. See README.md.
import { plugin, log, schema } from 'orch-sdk';

export const { describe, plan, run } = plugin({
  name: '{{name}}',
  version: '0.1.0',
  description: 'Greets someone',
  // The step's `with` table: `orch validate` checks workflows against this schema, and the
  // SDK checks it again (filling in defaults) before `step` runs.
  config: schema.object({
    who: schema.string({ description: 'Who to greet', default: 'world' }),
    shout: schema.boolean({ description: 'Greet in capitals', default: false }),
  }),
  // One body for `orch plan` and `orch run`: cx.change() records the change in a plan and
  // returns false; in a run it logs it and returns true.
  step(cx, config) {
    let greeting = `hello ${config.who}`;
    if (config.shout) greeting = `${greeting.toUpperCase()}!`;
    if (cx.change('run', 'greeting', greeting)) {
      log.info(greeting);
      cx.output('greeting', greeting);
    }
  },
});
