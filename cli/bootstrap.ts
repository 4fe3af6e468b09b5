// `clawdinator bootstrap`: run by clawdinator-bootstrap.service as root at boot (and again
// when user data starts it). Who am I (instance.env, else the user data through IMDSv2),
// then install this host's bundle once per bootstrap prefix (jobs/bootstrap/install.ts).
// Exit 0 when installed or already installed; 1 with one line when anything failed, with
// nothing installed.
import { Command } from 'commander';
import { Imds, imdsEndpoint, resolveIdentity } from '../jobs/bootstrap/identity.js';
import { bootstrap } from '../jobs/bootstrap/install.js';
import { createAwsCloud } from '../jobs/cloud/aws.js';
import { loadConfig } from '../lib/config.js';

export function command(): Command {
  return new Command('bootstrap')
    .description('install this host’s bootstrap bundle: workspace, repo seeds, secrets; once per bootstrap prefix')
    .action(async () => {
      const config = loadConfig([
        'instanceEnvFile',
        'bootstrapStateDir',
        'workspaceDir',
        'repoSeedsDir',
        'repoSeedsArchive',
        'opsSecretsDir',
        'agentSecretsDir',
        'imdsUrl',
        'bootstrapSwitch',
        'awsRegion',
        'opsOwner',
        'agentOwner',
        'efsTunnelConfig',
        'efsCaFile',
      ]);
      const say = (line: string) => process.stdout.write(`${line}\n`);
      const imds = new Imds(imdsEndpoint(config.imdsUrl), { label: 'bootstrap' });
      const { identity, source } = await resolveIdentity(config.instanceEnvFile, imds);
      if (source === 'imds')
        say(`${config.instanceEnvFile} was missing: read the user data from IMDS and wrote it back`);
      // The SDK does not ask IMDS for the region: the host's own comes from IMDS unless set.
      const region = config.awsRegion ?? (await imds.region());
      await bootstrap({
        cloud: createAwsCloud({ region }),
        identity,
        dirs: {
          state: config.bootstrapStateDir,
          workspace: config.workspaceDir,
          repoSeeds: config.repoSeedsDir,
          repoSeedsArchive: config.repoSeedsArchive,
          opsSecrets: config.opsSecretsDir,
          agentSecrets: config.agentSecretsDir,
        },
        owners: { ops: config.opsOwner ?? null, agent: config.agentOwner ?? null },
        efsTunnel:
          config.efsTunnelConfig === undefined
            ? undefined
            : { configFile: config.efsTunnelConfig, caFile: config.efsCaFile, region },
        switchCommand: config.bootstrapSwitch,
        log: say,
      });
    });
}
