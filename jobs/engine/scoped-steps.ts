// A job that runs another job type's steps inline (a rollout runs a replace per member)
// keeps them in its own saved steps under a prefix, `<scope>:<step>`: they are saved, signed
// and resumed with the job like its own, and two members' `plan` steps never collide.
import type { StepRunner } from './job-type.js';

export function scopedSteps(steps: StepRunner, scope: string): StepRunner {
  if (!/^[a-z0-9-]{1,60}$/.test(scope)) throw new Error(`step scope ${scope}: a-z, 0-9 and - only`);
  const prefix = `${scope}:`;
  return {
    run: (name, fn) => steps.run(prefix + name, fn),
    waitFor: (name, check, options) => steps.waitFor(prefix + name, check, options),
    done: (name) => steps.done(prefix + name),
    checkCancelled: () => steps.checkCancelled(),
    get results() {
      const out: Record<string, unknown> = {};
      for (const [name, value] of Object.entries(steps.results)) {
        if (name.startsWith(prefix)) out[name.slice(prefix.length)] = value;
      }
      return out;
    },
  };
}
