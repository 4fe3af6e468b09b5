// Fencing against a second create. A worker can die during an apply after RunInstances (or
// CreateRole) and before terraform saved its state; the state then knows nothing of what was
// made, and a resumed apply would plan a create again: a second instance with the same Name
// tag and user data, or an apply that dies on EntityAlreadyExists for the member's fixed-name
// role and instance profile. So before every apply, both deployers look up what exists — the
// instances with the member's Name or this job's tag (JOB_TAG, set at launch), the role and
// profile by name — against what the state holds, and:
//
//   - adopt (import) what this job launched when the state holds no instance: the instance was
//     made from this job's own plan (its AMI, user data, profile), so adopting it is what the
//     interrupted apply would have recorded, and it saves a second boot. The same for the role
//     and profile, which can only be adopted: their names are fixed.
//   - terminate what this job launched when the state holds an instance already (a replace
//     killed after launching the new host: the resumed replace plans its own create again),
//     and in a destroy (a retire, a spawn's undo): the state cannot destroy what it lacks.
//   - refuse an apply that would create an instance beside one with the member's Name that
//     neither the state nor this job knows (someone else's): never two running.
//
// Import rather than terminate-and-start-over because it is one mechanism for all three
// resources (the role and profile cannot be started over under their fixed names), it needs
// no wait for a termination, and it leaves no window with two hosts of one name booting.
import type { MEMBER_ADDRESSES } from '../../infra/names.js';
import type { Cloud, FleetInstance } from '../cloud/types.js';
import { JOB_TAG } from '../cloud/types.js';
import { PlanRefusedError } from '../terraform/runner.js';
import type { InstancePlanOptions } from './types.js';

/** What the fence asks of the cloud. */
export type FenceCloud = Pick<
  Cloud,
  'listFleetInstances' | 'terminateInstance' | 'roleExists' | 'instanceProfileExists'
>;

/** Where a stack keeps the member's resources; a stand-in stack (tests) may lack some. */
export type MemberAddresses = Partial<Record<keyof typeof MEMBER_ADDRESSES, string>>;

/** What an apply must import, by address: the id terraform imports it by. */
export type Imports = Record<string, string>;

const LIVE = new Set(['pending', 'running', 'stopping', 'stopped']);

/**
 * Looks up what exists against `state` (address → id), terminates what must go, and returns
 * the import blocks the apply needs. `onLine` hears what it did (the job's log).
 */
export async function fence(
  cloud: FenceCloud,
  name: string,
  options: InstancePlanOptions,
  state: Map<string, string>,
  addresses: MemberAddresses,
  onLine: (line: string) => void,
): Promise<Imports> {
  const imports: Imports = {};
  if (addresses.instance !== undefined) {
    const known = state.get(addresses.instance);
    const found = (await cloud.listFleetInstances()).filter(
      (i) => LIVE.has(i.state) && (i.name === name || i.tags[JOB_TAG] === options.jobId),
    );
    const unknown = found.filter((i) => i.instanceId !== known);
    const ours = unknown.filter((i) => i.tags[JOB_TAG] === options.jobId).sort(byLaunch);
    const foreign = unknown.filter((i) => i.tags[JOB_TAG] !== options.jobId);
    let terminate = ours;
    if (!options.destroy && known === undefined) {
      const stranger = foreign[0];
      if (stranger !== undefined) {
        throw new PlanRefusedError(
          `${name}: an instance named ${name} (${stranger.instanceId}, ${stranger.state}) exists that terraform's state does not hold and this job did not launch: not applied (retire it or terminate it first)`,
          { add: 0, change: 0, destroy: 0, resources: [] },
        );
      }
      const [adopted, ...rest] = ours;
      if (adopted !== undefined) {
        imports[addresses.instance] = adopted.instanceId;
        onLine(
          `${addresses.instance}: ${adopted.instanceId} was launched by this job and is not in the state: importing it`,
        );
      }
      terminate = rest;
    }
    for (const instance of terminate) {
      await cloud.terminateInstance(instance.instanceId);
      onLine(`${addresses.instance}: terminated ${instance.instanceId}, launched by this job and not in the state`);
    }
  }
  if (!options.destroy) {
    if (addresses.role !== undefined && !state.has(addresses.role) && (await cloud.roleExists(name))) {
      imports[addresses.role] = name;
      onLine(`${addresses.role}: ${name} exists and is not in the state: importing it`);
    }
    if (addresses.profile !== undefined && !state.has(addresses.profile) && (await cloud.instanceProfileExists(name))) {
      imports[addresses.profile] = name;
      onLine(`${addresses.profile}: ${name} exists and is not in the state: importing it`);
    }
  }
  return imports;
}

function byLaunch(a: FleetInstance, b: FleetInstance): number {
  return (a.launchTime ?? '').localeCompare(b.launchTime ?? '') || a.instanceId.localeCompare(b.instanceId);
}
