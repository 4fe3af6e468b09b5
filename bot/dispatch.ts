// The one path every interaction takes, whatever the transport: deduplicate, refuse DMs and
// what the policy does not allow (ephemeral, before anything runs), acknowledge, run the
// handler, turn any error into one ephemeral sentence, audit. Only errors of the project's
// own classes are shown as they are; anything else becomes a generic sentence with the
// interaction id, and its details go to the log only (they may hold paths or secrets).

import { authorize } from '../lib/authorize.js';
import { ClawError, errorLine } from '../lib/errors.js';
import { audit } from './audit.js';
import type { BotDeps, CommandModule, Invocation, Responder } from './types.js';

/** Claims an interaction for this gateway; false when another gateway (or a retry) has it. */
export type Claim = (interactionId: string) => Promise<boolean>;

export interface Dispatcher {
  handle(inv: Invocation, res: Responder): Promise<void>;
  readonly commands: ReadonlyMap<string, CommandModule>;
}

/** Claims in this process only: enough for one gateway (the job engine adds a Redis claim). */
export function localClaim(limit = 10_000): Claim {
  const seen = new Set<string>();
  return async (id) => {
    if (seen.has(id)) return false;
    seen.add(id);
    if (seen.size > limit) seen.delete(seen.values().next().value as string);
    return true;
  };
}

function commandOf(inv: Invocation): string {
  if (inv.kind === 'command' || inv.kind === 'autocomplete') return inv.command;
  return inv.customId.split(':', 1)[0] as string;
}

/** Handler work waits at most this long for a burst's acknowledgements to go out. */
const MAX_WORK_DELAY_MS = 1000;

/**
 * Counts interactions received and not yet acknowledged; `idle()` resolves when there are
 * none (or after a bound, so a steady stream cannot starve handler work).
 */
class AckGate {
  private pending = 0;
  private waiters: (() => void)[] = [];

  /** One more interaction to acknowledge; returns its (idempotent) "acknowledged" callback. */
  arrive(): () => void {
    this.pending++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.pending--;
      if (this.pending === 0) {
        const waiters = this.waiters;
        this.waiters = [];
        for (const wake of waiters) wake();
      }
    };
  }

  idle(maxMs: number): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, maxMs);
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

export function createDispatcher(modules: CommandModule[], deps: BotDeps, claim: Claim = localClaim()): Dispatcher {
  const commands = new Map(modules.map((m) => [m.data.name, m]));
  const gate = new AckGate();

  async function run(
    inv: Invocation,
    res: Responder,
    module: CommandModule,
    acknowledged: () => void,
  ): Promise<string> {
    if (inv.kind === 'autocomplete') {
      await res.autocomplete(module.autocomplete ? await module.autocomplete(inv, deps) : []);
      return 'ok';
    }
    const ack = module.ack(inv);
    if (ack !== 'none') {
      await res.defer({ ephemeral: ack === 'defer-ephemeral' });
      acknowledged();
      // Acknowledge first, work later: in a burst, every interaction gets its defer out
      // before handler work competes with the others' (Discord's 3 s limit is on the defer).
      await gate.idle(MAX_WORK_DELAY_MS);
    } else {
      acknowledged();
    }
    if (inv.kind === 'command') await module.execute(inv, res, deps);
    else if (inv.kind === 'button' && module.button) await module.button(inv, res, deps);
    else if (inv.kind === 'modal' && module.modal) await module.modal(inv, res, deps);
    else throw new ClawError('This button or form is no longer supported.');
    return 'ok';
  }

  async function handle(inv: Invocation, res: Responder): Promise<void> {
    const acknowledged = gate.arrive();
    try {
      await dispatch(inv, res, acknowledged);
    } finally {
      acknowledged();
    }
  }

  async function dispatch(inv: Invocation, res: Responder, acknowledged: () => void): Promise<void> {
    if (!(await claim(inv.id))) return;
    const module = commands.get(commandOf(inv));
    if (module === undefined) {
      await res.fail('Unknown command.');
      acknowledged();
      await audit(deps, inv, 'refused: unknown command');
      return;
    }
    const decision = authorize(deps.policy, module.permission(inv), inv.actor);
    if (!decision.allowed) {
      if (inv.kind === 'autocomplete') await res.autocomplete([]);
      else await res.fail(decision.reason);
      acknowledged();
      await audit(deps, inv, `refused: ${decision.reason}`);
      return;
    }
    let outcome: string;
    try {
      outcome = await run(inv, res, module, acknowledged);
    } catch (err) {
      const known = err instanceof ClawError;
      const message = known
        ? errorLine(err)
        : `Something went wrong (interaction ${inv.id}); the details are in the log.`;
      if (!known) deps.log.error({ err, interaction: inv.id }, 'handler failed');
      outcome = `failed: ${message}`;
      await res
        .fail(message, { unexpected: !known })
        .catch((e) => deps.log.error({ err: e, interaction: inv.id }, 'error reply failed'));
    }
    if (inv.kind !== 'autocomplete') await audit(deps, inv, outcome);
  }

  return { handle, commands };
}
