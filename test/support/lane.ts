// The fast lane over a simulated fleet (test/support/fleet.ts): FastLaneDeps on the fleet's
// simulated cloud with revs resolved among fixed refs, short waits, and a way to queue a
// deploy and wait for its end. The simulated hosts (jobs/cloud/sim-hosts.ts) switch, fail on
// the `switch` fault, and never report again on a broken revision.
import type { Job } from 'bullmq';
import type { Envelope, Principal } from '../../jobs/engine/envelope.js';
import type { FastLaneDeps } from '../../jobs/fastlane/deps.js';
import { staticResolver } from '../../jobs/github/revision.js';
import { MAIN_SHA, REPO, V2_SHA } from './ami.js';
import type { SimFleet } from './fleet.js';
import { type Lifecycle, OPERATOR } from './lifecycle.js';

/** A commit whose switch passes the host's check but whose worker never reports again. */
export const BROKEN_SHA = 'b40ce0b40ce0b40ce0b40ce0b40ce0b40ce0b40c';
export const LANE_REFS = { main: MAIN_SHA, v2: V2_SHA, broken: BROKEN_SHA };

export function simLane(sim: SimFleet, overrides: Partial<FastLaneDeps> = {}): FastLaneDeps {
  return {
    cloud: sim.cloud,
    resolver: staticResolver({ repo: REPO, branch: 'main', refs: LANE_REFS }),
    waits: { pollMs: 20, switchTimeoutMs: 20_000, verifyTimeoutMs: 1500, handoffMs: 20_000 },
    ...overrides,
  };
}

let requests = 0;

/** Queues a deploy as `principal` (an operator by default) and waits for its end. */
export async function runDeploy(
  h: Lifecycle,
  data: { rev?: string; target?: string },
  principal: Principal = OPERATOR,
): Promise<Job<Envelope>> {
  const { jobId } = await queueDeploy(h, data, principal);
  return h.finished(jobId);
}

export async function queueDeploy(
  h: Lifecycle,
  data: { rev?: string; target?: string },
  principal: Principal = OPERATOR,
): Promise<{ jobId: string }> {
  requests++;
  const who = principal.kind === 'agent' ? 'agent' : principal.kind === 'schedule' ? 'schedule' : 'operator';
  return h.enqueuer(who).enqueue({
    type: 'deploy',
    data,
    principal,
    requestId: `deploy-${process.pid}-${requests}`,
  });
}

/** The switch-start commands the hosts received, as `<member>:<sha7>`, in order. */
export function switches(sim: SimFleet): string[] {
  return sim.cloud
    .sentCommands()
    .filter((c) => c.parameters.action === 'switch-start')
    .map((c) => `${c.host}:${c.parameters.sha?.slice(0, 7)}`);
}
