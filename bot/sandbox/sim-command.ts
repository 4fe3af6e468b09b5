// /sim — the sandbox's own command, on the console only (never registered with Discord):
// failure and strays on purpose, so a user can watch a failure, its message and its clean-up.
//   /sim fail <what> [times:N] [code:X] [message:"…"]   the next N times <what> happens, it fails
//   /sim faults                                          every fault name, what it covers, armed counts
//   /sim orphan <name>                                   an instance tagged as ours that the registry
//                                                        does not know (what a dead spawn leaves)
// <what> is a fault name of the simulated world (plan, apply, run-instances, ssm, heartbeat, s3,
// secrets, import, and those later parts define) or an AWS operation name (TerminateInstances).
import { SlashCommandBuilder } from '@discordjs/builders';
import type { FleetRegistry } from '../../infra/registry.js';
import type { SimCloud } from '../../jobs/cloud/sim.js';
import { instanceName } from '../../lib/config.js';
import { UsageError } from '../../lib/errors.js';
import type { CommandInvocation, CommandModule } from '../types.js';

export const SIM_COMMAND = 'sim';

export const data = new SlashCommandBuilder()
  .setName(SIM_COMMAND)
  .setDescription('The simulated world: failures and strays on purpose (sandbox only)')
  .addSubcommand((s) =>
    s
      .setName('fail')
      .setDescription('The next N times this happens, it fails')
      .addStringOption((o) =>
        o.setName('what').setDescription('a fault name (see /sim faults) or an AWS operation').setRequired(true),
      )
      .addIntegerOption((o) => o.setName('times').setDescription('how many times (default 1)').setMinValue(1))
      .addStringOption((o) => o.setName('code').setDescription('the AWS error code a failing call answers with'))
      .addStringOption((o) => o.setName('message').setDescription('what the failure says')),
  )
  .addSubcommand((s) => s.setName('faults').setDescription('Fault names, what each covers, and what is armed'))
  .addSubcommand((s) =>
    s
      .setName('orphan')
      .setDescription('Launch an instance tagged as ours that the registry does not know')
      .addStringOption((o) => o.setName('name').setDescription('its Name tag, e.g. clawdinator-7').setRequired(true)),
  );

export interface SimCommandDeps {
  cloud: SimCloud;
  registry: () => Promise<FleetRegistry>;
  /** The image and type an orphan is launched with. */
  ami: string;
  instanceType: string;
  /** Called with each orphan's instance id: it runs no worker (it never bootstrapped). */
  onOrphan: (instanceId: string) => void;
}

function text(inv: CommandInvocation, name: string): string | undefined {
  const v = inv.options[name];
  if (v !== undefined && typeof v !== 'string') throw new UsageError(`Option ${name} must be text.`);
  return v;
}

export function simCommand(deps: SimCommandDeps): CommandModule {
  const { cloud } = deps;
  return {
    data,
    permission: () => SIM_COMMAND,
    ack: () => 'none',
    async execute(inv, res) {
      switch (inv.subcommand) {
        case 'fail': {
          const what = text(inv, 'what') ?? '';
          const times = inv.options.times;
          if (times !== undefined && typeof times !== 'number') throw new UsageError('Option times must be a number.');
          cloud.faults.arm(what, { times, code: text(inv, 'code'), message: text(inv, 'message') });
          const armed = cloud.faults.list().find((f) => f.name === what);
          await res.send({
            content: `💥 armed: the next ${armed?.remaining ?? times ?? 1} × \`${what}\` fail (${armed?.description ?? 'AWS operation'}). /sim faults lists what is armed.`,
          });
          return;
        }
        case 'faults': {
          const rows = cloud.faults
            .list()
            .map((f) => `${f.remaining > 0 ? `💥 ${f.remaining}×` : '   —'}  ${f.name.padEnd(14)} ${f.description}`);
          await res.send({ content: ['Faults (armed × name, what it covers):', ...rows].join('\n') });
          return;
        }
        case 'orphan': {
          const name = text(inv, 'name') ?? '';
          const parsed = instanceName.safeParse(name);
          if (!parsed.success) throw new UsageError(`${name}: not a fleet member name (clawdinator-<n>)`);
          if (name in (await deps.registry())) {
            throw new UsageError(`${name} is in the registry: an orphan is an instance the registry does not know`);
          }
          const instanceId = await cloud.launchInstance({ name, ami: deps.ami, instanceType: deps.instanceType });
          deps.onOrphan(instanceId);
          await res.send({
            content: `👻 launched ${instanceId} (${name}), tagged app=clawdinator, not in the registry: the health sweep reports it as a stray.`,
          });
          return;
        }
        default:
          throw new UsageError('/sim needs a subcommand: fail, faults, orphan');
      }
    },
  };
}
