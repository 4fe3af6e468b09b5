// The one configuration module. Settings come from `CLAWDINATOR_*` environment variables,
// then from an optional JSON file named by `CLAWDINATOR_CONFIG` (keys are the setting names
// below); the environment wins. Each subcommand asks for the settings it uses, so
// `memory read` never needs a Redis URL. A wrong or missing setting is one line naming it.
// Secrets are never settings themselves: a setting names the file that holds one
// (`*_FILE`), and `readSecretFile` reads it without ever echoing the content.
//
// Adding a setting is one line in `settings` plus a function that builds its schema (built
// on first use: `memory read` needs three of about 110).
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { agentConfigProblem, modelRef, PROXY_PROVIDERS, rawAgentConfig, thinkingLevel } from './agent-config.js';
import { ConfigError } from './errors.js';

interface Setting<S extends z.ZodTypeAny> {
  env: string;
  /** Built on first use: building every setting's schema cost `memory read` ≈ 13 ms of its cold start. */
  schema: () => S;
  expected: string;
  /** Parse the environment variable as JSON (objects and lists). */
  json?: boolean;
}

function setting<S extends z.ZodTypeAny>(env: string, schema: () => S, expected: string, json = false): Setting<S> {
  let built: S | undefined;
  return { env, schema: () => (built ??= schema()), expected, json };
}

const MiB = 1024 * 1024;
const positiveInt = (max: number) => z.coerce.number().int().positive().max(max);
const snowflake = z.string().regex(/^\d{17,20}$/);
const snowflakes = z.array(snowflake);
// A fleet member's name is also its host name, its IAM role and profile names and part of
// its STS session name: DNS-label characters with no leading, trailing or doubled "-"
// (`clawdinator-3-` would pass a character class and fail NixOS evaluation after the
// instance exists), and at most 40 characters (a role session name "clawdinator-<name>"
// must stay within IAM's 64).
export const NAME_MAX = 40;
export const NAME_RULE = `clawdinator-<a-z0-9>, words joined by single "-", at most ${NAME_MAX} characters`;
const NAME_PATTERN = /^clawdinator-[a-z0-9]+(-[a-z0-9]+)*$/;
export const instanceName = z.string().max(NAME_MAX, `at most ${NAME_MAX} characters`).regex(NAME_PATTERN, NAME_RULE);
export function isInstanceName(value: unknown): value is string {
  return instanceName.safeParse(value).success;
}
// An EC2 instance type's shape; which ones a spawn may use is the `instanceTypes` setting.
export const instanceTypeShape = z.string().regex(/^[a-z][a-z0-9-]*\.[a-z0-9]+$/, 'an EC2 instance type like t3.large');
/** The original ran t3.large hosts (t3.small for a translation-only one); a few larger for heavier agents. */
export const DEFAULT_INSTANCE_TYPES = [
  't3.small',
  't3.medium',
  't3.large',
  't3.xlarge',
  't3.2xlarge',
  'm7i.large',
  'm7i.xlarge',
  'c7i.xlarge',
] as const;
const s3Bucket = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const awsRegion = z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/);
const cidr = z.string().regex(/^(\d{1,3}(\.\d{1,3}){3}\/\d{1,2}|[0-9a-fA-F:]+\/\d{1,3})$/);
const keyId = z
  .string()
  .refine(
    (id) =>
      /^(gateway|schedule|operator:[a-z0-9_.-]{1,32})$/.test(id) ||
      (id.startsWith('agent:') && isInstanceName(id.slice(6))),
    'gateway, schedule, operator:<name> or agent:<fleet name>',
  );
// The password never rides in the URL: it comes from CLAWDINATOR_REDIS_PASSWORD_FILE.
const absolutePath = z.string().regex(/^\/.+/);
const owner = z
  .string()
  .regex(/^\d{1,10}:\d{1,10}$/)
  .transform((v) => {
    const [uid, gid] = v.split(':').map(Number) as [number, number];
    return { uid, gid };
  });
/** An http(s) origin without a path, user or query (where the model proxy forwards). */
const httpOrigin = z
  .string()
  .url()
  .refine((u) => {
    const url = new URL(u);
    return /^https?:$/.test(url.protocol) && url.pathname === '/' && url.search === '' && url.username === '';
  }, 'an http(s) origin like https://api.anthropic.com');
const redisUrl = z
  .string()
  .url()
  .refine((u) => /^rediss?:$/.test(new URL(u).protocol), 'redis:// or rediss://')
  .refine((u) => new URL(u).password === '', 'no password in the URL');

// Five cron fields (minute hour day month weekday), read in UTC by BullMQ's job schedulers.
const cronPattern = z.string().regex(/^[0-9*/,-]+( [0-9*/,A-Za-z-]+){4}$/);
// Who may use which command: deny by default. Keys are "*", a command ("memory") or a
// command and subcommand ("memory write"); the most specific key present decides. A rule
// allows the listed users, or members holding a listed role, in the listed guilds (and
// channels, when given). DMs are always refused.
const authorizationRule = z
  .object({
    guilds: snowflakes.min(1),
    channels: snowflakes.optional(),
    roles: snowflakes.default([]),
    users: snowflakes.default([]),
  })
  .strict()
  .refine((r) => r.roles.length + r.users.length > 0, 'a rule needs roles or users');
export const authorizationSchema = z.record(
  z.string().regex(/^(\*|[a-z-]+( [a-z-]+)?)$/),
  z.union([authorizationRule, z.array(authorizationRule)]),
);
export type AuthorizationConfig = z.output<typeof authorizationSchema>;
export type AuthorizationRule = z.output<typeof authorizationRule>;

export const settings = {
  memoryDir: setting('CLAWDINATOR_MEMORY_DIR', () => z.string().min(1).default('/memory'), 'a directory path'),
  memoryMaxBytes: setting(
    'CLAWDINATOR_MEMORY_MAX_BYTES',
    () => positiveInt(64 * MiB).default(MiB),
    `a whole number of bytes from 1 to ${64 * MiB}`,
  ),
  memoryLockWaitSeconds: setting(
    'CLAWDINATOR_MEMORY_LOCK_WAIT',
    () => z.coerce.number().min(0).max(600).default(5),
    'seconds from 0 to 600',
  ),
  logLevel: setting(
    'CLAWDINATOR_LOG_LEVEL',
    () => z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
    'one of trace, debug, info, warn, error, fatal, silent',
  ),
  discordTokenFile: setting(
    'CLAWDINATOR_DISCORD_TOKEN_FILE',
    () => z.string().min(1),
    'the path of the file holding the ops bot token',
  ),
  discordApiUrl: setting(
    'CLAWDINATOR_DISCORD_API_URL',
    () => z.string().url().default('https://discord.com/api'),
    'an http(s) URL',
  ),
  discordAppId: setting('CLAWDINATOR_DISCORD_APP_ID', () => snowflake, 'the Discord application id (a snowflake)'),
  discordGuildIds: setting('CLAWDINATOR_DISCORD_GUILD_IDS', () => snowflakes.min(1), 'a JSON list of guild ids', true),
  authorization: setting(
    'CLAWDINATOR_AUTHORIZATION',
    () => authorizationSchema.default({}),
    'an authorization map (see README)',
    true,
  ),
  redisUrl: setting('CLAWDINATOR_REDIS_URL', () => redisUrl, 'a redis:// or rediss:// URL without a password'),
  redisPasswordFile: setting(
    'CLAWDINATOR_REDIS_PASSWORD_FILE',
    () => z.string().min(1).optional(),
    'the path of the file holding the Redis password',
  ),
  hostName: setting('CLAWDINATOR_HOST_NAME', () => instanceName, `this host’s fleet name (${NAME_RULE})`),
  jobSigningKeyFile: setting(
    'CLAWDINATOR_JOB_SIGNING_KEY_FILE',
    () => z.string().min(1),
    'the path of this principal’s Ed25519 private key (PEM)',
  ),
  jobKeyId: setting('CLAWDINATOR_JOB_KEY_ID', () => keyId, 'gateway, schedule, operator:<name> or agent:<host>'),
  jobPublicKeys: setting(
    'CLAWDINATOR_JOB_PUBLIC_KEYS',
    () => z.record(keyId, z.string().includes('PUBLIC KEY')).default({}),
    'a JSON map of key id to Ed25519 public key (PEM)',
    true,
  ),
  jobMaxAgeSeconds: setting(
    'CLAWDINATOR_JOB_MAX_AGE',
    () => z.coerce.number().int().min(10).max(3600).default(300),
    'seconds from 10 to 3600',
  ),
  jobLockDurationMs: setting(
    'CLAWDINATOR_JOB_LOCK_DURATION_MS',
    () => z.coerce.number().int().min(200).default(30_000),
    'milliseconds, at least 200',
  ),
  jobStalledIntervalMs: setting(
    'CLAWDINATOR_JOB_STALLED_INTERVAL_MS',
    () => z.coerce.number().int().min(200).default(30_000),
    'milliseconds, at least 200',
  ),
  jobMaxStalledCount: setting(
    'CLAWDINATOR_JOB_MAX_STALLED_COUNT',
    () => z.coerce.number().int().min(0).max(100).default(5),
    'a whole number from 0 to 100',
  ),
  jobConcurrency: setting(
    'CLAWDINATOR_JOB_CONCURRENCY',
    () => z.coerce.number().int().min(1).max(200).default(4),
    'a whole number from 1 to 200',
  ),
  heartbeatTtlSeconds: setting(
    'CLAWDINATOR_HEARTBEAT_TTL',
    () => z.coerce.number().int().min(2).max(3600).default(90),
    'seconds from 2 to 3600',
  ),
  healthSweepSeconds: setting(
    'CLAWDINATOR_HEALTH_SWEEP_SECONDS',
    () => z.coerce.number().int().min(2).max(3600).default(60),
    'seconds from 2 to 3600 (the same on every host)',
  ),
  opsChannelId: setting(
    'CLAWDINATOR_OPS_CHANNEL_ID',
    () => snowflake.optional(),
    'the Discord channel id for alerts and confirmations',
  ),
  agentRequestsPerHour: setting(
    'CLAWDINATOR_AGENT_REQUESTS_PER_HOUR',
    () => z.coerce.number().int().min(0).max(100).default(3),
    'a whole number from 0 to 100',
  ),
  // How long an agent's retire or replace waits for a human in the ops channel.
  agentConfirmSeconds: setting(
    'CLAWDINATOR_AGENT_CONFIRM_SECONDS',
    () => z.coerce.number().int().min(1).max(86_400).default(1800),
    'seconds from 1 to 86400',
  ),
  // Safety rail: spawn refuses to grow the registry beyond this many members.
  fleetMaxSize: setting(
    'CLAWDINATOR_FLEET_MAX_SIZE',
    () => z.coerce.number().int().min(1).max(1000).default(5),
    'a whole number from 1 to 1000',
  ),
  // Safety rail: spawns started in any hour, whoever asked.
  spawnsPerHour: setting(
    'CLAWDINATOR_SPAWNS_PER_HOUR',
    () => z.coerce.number().int().min(0).max(100).default(3),
    'a whole number from 0 to 100',
  ),
  defaultInstanceType: setting(
    'CLAWDINATOR_DEFAULT_INSTANCE_TYPE',
    () => instanceTypeShape.default('t3.large'),
    'an EC2 instance type like t3.large (one of CLAWDINATOR_INSTANCE_TYPES)',
  ),
  // Safety rail: the instance types a spawn may ask for, whoever asks (an agent's signed
  // request included); /spawn offers the same list. The default type must be one of them.
  instanceTypes: setting(
    'CLAWDINATOR_INSTANCE_TYPES',
    () =>
      z
        .array(instanceTypeShape)
        .min(1)
        .max(25)
        .default([...DEFAULT_INSTANCE_TYPES]),
    'a JSON list of EC2 instance types (1 to 25), like ["t3.large"]',
    true,
  ),
  // The agent's way to the control plane: the ops gateway of each host serves this unix
  // socket (bot/request-socket.ts) in a directory only the ops user and the agent's group can
  // enter; `clawdinator request` (run by the agent) connects to it. The agent holds no Redis
  // credential.
  requestSocket: setting(
    'CLAWDINATOR_REQUEST_SOCKET',
    () => absolutePath.default('/run/clawdinator-request/request.sock'),
    'an absolute path of a unix socket',
  ),
  // This host's agent's public key (PEM), written by the bootstrap: the gateway verifies the
  // agent's requests with it and needs no registry credential. Unset: no request socket.
  agentPublicKeyFile: setting(
    'CLAWDINATOR_AGENT_PUBLIC_KEY_FILE',
    () => absolutePath.optional(),
    'an absolute path of this host’s agent’s Ed25519 public key (PEM)',
  ),
  // The base stack's bucket: bootstrap bundles go under bootstrap/<name>/.
  bootstrapBucket: setting(
    'CLAWDINATOR_BOOTSTRAP_BUCKET',
    () => z.string().regex(s3Bucket),
    'the S3 bucket of the bootstrap bundles (the base stack’s bucket output)',
  ),
  // The base stack's EFS (efs_id output), named in each host's bootstrap bundle.
  efsId: setting(
    'CLAWDINATOR_EFS_ID',
    () =>
      z
        .string()
        .regex(/^fs-[0-9a-f]{8,17}$/)
        .optional(),
    'an EFS id (fs-…)',
  ),
  // The fleet's Redis as hosts reach it (base stack's redis_endpoint/redis_port), for bootstrap
  // bundles; default CLAWDINATOR_REDIS_URL (a worker's Redis is the fleet's, `--local`'s is not).
  fleetRedisUrl: setting(
    'CLAWDINATOR_FLEET_REDIS_URL',
    () => redisUrl.optional(),
    'a rediss:// URL without a password',
  ),
  // `clawdinator bootstrap` on a host (nix/module.nix sets these); defaults are the host's paths.
  instanceEnvFile: setting(
    'CLAWDINATOR_INSTANCE_ENV',
    () => absolutePath.default('/var/lib/clawdinator/instance.env'),
    'an absolute file path',
  ),
  bootstrapStateDir: setting(
    'CLAWDINATOR_BOOTSTRAP_STATE_DIR',
    () => absolutePath.default('/var/lib/clawdinator'),
    'an absolute directory path',
  ),
  opsSecretsDir: setting(
    'CLAWDINATOR_OPS_SECRETS_DIR',
    () => absolutePath.default('/run/clawdinator-ops'),
    'an absolute directory path',
  ),
  agentSecretsDir: setting(
    'CLAWDINATOR_AGENT_SECRETS_DIR',
    () => absolutePath.default('/run/clawdinator'),
    'an absolute directory path',
  ),
  workspaceDir: setting(
    'CLAWDINATOR_WORKSPACE_DIR',
    () => absolutePath.default('/var/lib/clawd/workspace'),
    'an absolute directory path',
  ),
  repoSeedsDir: setting(
    'CLAWDINATOR_REPO_SEEDS_DIR',
    () => absolutePath.default('/var/lib/clawd/repo-seeds'),
    'an absolute directory path',
  ),
  // Unset: the SDK's AWS_EC2_METADATA_SERVICE_ENDPOINT, else http://169.254.169.254 (imdsEndpoint()).
  // Who the bootstrap (root) gives the files to: uid:gid, numbers (nix/units.json ids); unset:
  // files stay as created (a bootstrap run by hand, tests that are not root).
  opsOwner: setting('CLAWDINATOR_OPS_OWNER', () => owner.optional(), 'uid:gid, numbers'),
  agentOwner: setting('CLAWDINATOR_AGENT_OWNER', () => owner.optional(), 'uid:gid, numbers'),
  // Where the bootstrap writes the EFS tunnel's config (unset: none written) and the CA bundle
  // stunnel checks the EFS certificate with.
  efsTunnelConfig: setting('CLAWDINATOR_EFS_TUNNEL_CONFIG', () => absolutePath.optional(), 'an absolute file path'),
  efsCaFile: setting(
    'CLAWDINATOR_EFS_CA_FILE',
    () => absolutePath.default('/etc/ssl/certs/ca-certificates.crt'),
    'an absolute file path',
  ),
  // The flake a new host's first boot switches to: this project's repository (github:owner/repo),
  // pinned by spawn to the revision the spawning worker runs (its build info) when that is a commit.
  hostFlake: setting(
    'CLAWDINATOR_HOST_FLAKE',
    () =>
      z
        .string()
        .regex(/^github:[A-Za-z0-9_.-]{1,100}\/[A-Za-z0-9_.-]{1,100}(\/[A-Za-z0-9_.-]{1,100})?$/)
        .optional(),
    'a flake reference github:<owner>/<repo>[/<rev>]',
  ),
  imdsUrl: setting(
    'CLAWDINATOR_IMDS_URL',
    () => z.string().url().optional(),
    'an http URL of the instance metadata service',
  ),
  // What the worker's heartbeat reports about the host's build (nix/module.nix writes it:
  // {revision, locked, version}), re-read at every beat so a switch shows without a restart.
  buildInfoFile: setting(
    'CLAWDINATOR_BUILD_INFO_FILE',
    () => absolutePath.default('/etc/clawdinator/build-info.json'),
    'an absolute file path',
  ),
  // argv handed the new configuration's switch after a (re)initialization; "{host}" is replaced; [] skips it.
  bootstrapSwitch: setting(
    'CLAWDINATOR_BOOTSTRAP_SWITCH',
    () => z.array(z.string().min(1)).default([]),
    'a JSON list of command words, [] to skip',
    true,
  ),
  // Infrastructure (infra/, jobs/terraform/). Unset regions fall back to the AWS chain
  // (AWS_REGION, the profile), as the SDK clients do, so synth needs no setting at all.
  terraformBin: setting(
    'CLAWDINATOR_TERRAFORM_BIN',
    () => z.string().min(1).default('terraform'),
    'terraform or tofu, or a path',
  ),
  // TF_CLI_CONFIG_FILE for every terraform run (on hosts: the module's, bundled providers only).
  terraformConfigFile: setting(
    'CLAWDINATOR_TERRAFORM_CONFIG',
    () => absolutePath.optional(),
    'an absolute path of a terraform CLI configuration file',
  ),
  stateBucket: setting(
    'CLAWDINATOR_STATE_BUCKET',
    () => z.string().regex(s3Bucket),
    'the S3 bucket of the Terraform state',
  ),
  stateRegion: setting('CLAWDINATOR_STATE_REGION', () => awsRegion.optional(), 'an AWS region like eu-central-1'),
  awsRegion: setting('CLAWDINATOR_AWS_REGION', () => awsRegion.optional(), 'an AWS region like eu-central-1'),
  deployerRoleArn: setting(
    'CLAWDINATOR_DEPLOYER_ROLE_ARN',
    () =>
      z
        .string()
        .regex(/^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]+$/)
        .optional(),
    'an IAM role ARN',
  ),
  vpcId: setting(
    'CLAWDINATOR_VPC_ID',
    () =>
      z
        .string()
        .regex(/^vpc-[0-9a-f]{8,17}$/)
        .optional(),
    'a VPC id (vpc-…)',
  ),
  subnetIds: setting(
    'CLAWDINATOR_SUBNET_IDS',
    () => z.array(z.string().regex(/^subnet-[0-9a-f]{8,17}$/)).default([]),
    'a JSON list of subnet ids, one per availability zone',
    true,
  ),
  sshCidrs: setting(
    'CLAWDINATOR_SSH_CIDRS',
    () => z.array(cidr).default([]),
    'a JSON list of CIDRs (1.2.3.4/32)',
    true,
  ),
  rootVolumeGb: setting(
    'CLAWDINATOR_ROOT_VOLUME_GB',
    () => z.coerce.number().int().min(8).max(16_384).default(40),
    'GiB from 8 to 16384',
  ),
  redisNodeType: setting(
    'CLAWDINATOR_REDIS_NODE_TYPE',
    () =>
      z
        .string()
        .regex(/^cache\.[a-z0-9]+\.[a-z0-9]+$/)
        .default('cache.t4g.micro'),
    'an ElastiCache node type like cache.t4g.micro',
  ),
  fleetRegistryPath: setting(
    'CLAWDINATOR_FLEET_REGISTRY',
    () => z.string().min(1).optional(),
    'the path of the fleet registry JSON',
  ),
  // Where the jobs keep the registry: `file` (CLAWDINATOR_FLEET_REGISTRY, sandbox and day 0)
  // or `github` (the project's repo through the contents API, as the GitHub App).
  fleetRegistryBackend: setting(
    'CLAWDINATOR_FLEET_REGISTRY_BACKEND',
    () => z.enum(['file', 'github']).default('file'),
    'file or github',
  ),
  githubAppId: setting(
    'CLAWDINATOR_GITHUB_APP_ID',
    () => z.string().regex(/^\d{1,12}$/),
    'the GitHub App’s id (a number)',
  ),
  githubInstallationId: setting(
    'CLAWDINATOR_GITHUB_INSTALLATION_ID',
    () => z.string().regex(/^\d{1,15}$/),
    'the id of the GitHub App’s installation on the project’s account (a number)',
  ),
  githubAppKeyFile: setting(
    'CLAWDINATOR_GITHUB_APP_KEY_FILE',
    () => z.string().min(1),
    'the path of the GitHub App’s private key (PEM)',
  ),
  githubApiUrl: setting(
    'CLAWDINATOR_GITHUB_API_URL',
    () => z.string().url().default('https://api.github.com'),
    'an http(s) URL (GitHub Enterprise: https://<host>/api/v3)',
  ),
  githubRegistryRepo: setting(
    'CLAWDINATOR_GITHUB_REGISTRY_REPO',
    () => z.string().regex(/^[A-Za-z0-9-]{1,39}\/[A-Za-z0-9._-]{1,100}$/),
    'the repository holding the fleet registry, owner/name',
  ),
  githubRegistryBranch: setting(
    'CLAWDINATOR_GITHUB_REGISTRY_BRANCH',
    () =>
      z
        .string()
        .regex(/^(?!\/|-)(?!.*(\.\.|\/\/|@\{|\.lock$|\/$))[A-Za-z0-9._/-]{1,200}$/)
        .default('main'),
    'a branch name like main',
  ),
  githubRegistryPath: setting(
    'CLAWDINATOR_GITHUB_REGISTRY_PATH',
    () =>
      z
        .string()
        .regex(/^(?!\/)(?!.*(^|\/)\.\.?(\/|$))[A-Za-z0-9._/-]{1,300}$/)
        .default('infra/fleet.json'),
    'a file path in the repository like infra/fleet.json',
  ),
  // `allow` only when the App may bypass the branch's protection or rules.
  githubRegistryProtectedBranch: setting(
    'CLAWDINATOR_GITHUB_REGISTRY_PROTECTED_BRANCH',
    () => z.enum(['refuse', 'allow']).default('refuse'),
    'refuse or allow',
  ),
  // GitHub for the agents (jobs/github/): the org sync, the agents' narrowed tokens, repo seeds.
  githubOrg: setting(
    'CLAWDINATOR_GITHUB_ORG',
    () => z.string().regex(/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$/),
    'the GitHub organization to sync into the memory (its login)',
  ),
  githubSyncExclude: setting(
    'CLAWDINATOR_GITHUB_SYNC_EXCLUDE',
    () => z.array(z.string().regex(/^([A-Za-z0-9-]{1,39}\/)?[A-Za-z0-9._-]{1,100}$/)).default([]),
    'a JSON list of repositories (name or owner/name) the sync leaves out',
    true,
  ),
  githubTokenDir: setting(
    'CLAWDINATOR_GITHUB_TOKEN_DIR',
    () => absolutePath.default('/run/clawdinator-github'),
    'an absolute directory path (the control plane’s, readable by the agent’s group)',
  ),
  githubTokenRefreshMinutes: setting(
    'CLAWDINATOR_GITHUB_TOKEN_REFRESH_MINUTES',
    () => z.coerce.number().int().min(5).max(50).default(45),
    'minutes from 5 to 50 (a token lives 60)',
  ),
  githubAgentRepos: setting(
    'CLAWDINATOR_GITHUB_AGENT_REPOS',
    () =>
      z
        .array(z.string().regex(/^([A-Za-z0-9-]{1,39}\/)?[A-Za-z0-9._-]{1,100}$/))
        .max(500)
        .default([]),
    'a JSON list of repository names for the agents’ token ([]: every repository of the installation but the registry’s)',
    true,
  ),
  githubAgentPermissions: setting(
    'CLAWDINATOR_GITHUB_AGENT_PERMISSIONS',
    () =>
      z
        .record(z.string().regex(/^[a-z_]{1,40}$/), z.enum(['read', 'write']))
        .refine((p) => Object.keys(p).length > 0, 'at least one permission')
        .default({ metadata: 'read', contents: 'write', pull_requests: 'write', issues: 'write' }),
    'a JSON map of GitHub App permission to read or write',
    true,
  ),
  agentGroup: setting(
    'CLAWDINATOR_AGENT_GROUP',
    () =>
      z
        .string()
        .regex(/^([a-z_][a-z0-9_-]{0,31}|\d{1,10})$/)
        .default('clawdinator'),
    'the agent’s group (a name or a gid)',
  ),
  githubWebUrl: setting(
    'CLAWDINATOR_GITHUB_WEB_URL',
    () => z.string().url().optional(),
    'the https URL git clones from (default: from CLAWDINATOR_GITHUB_API_URL, https://github.com)',
  ),
  repoSeedsArchive: setting(
    'CLAWDINATOR_REPO_SEEDS_ARCHIVE',
    () => absolutePath.default('/var/lib/clawdinator/repo-seeds.tar.zst'),
    'an absolute file path (the seeds the bootstrap staged)',
  ),
  reposDir: setting(
    'CLAWDINATOR_REPOS_DIR',
    () => absolutePath.optional(),
    'an absolute directory path (default ~/repos)',
  ),
  // The project's own repository and branch: what `rev` is resolved in (default: the branch's
  // head) and what the image (and later the fast lane, /deploy) is built from.
  projectRepo: setting(
    'CLAWDINATOR_PROJECT_REPO',
    () => z.string().regex(/^[A-Za-z0-9-]{1,39}\/[A-Za-z0-9._-]{1,100}$/),
    'the project’s GitHub repository, owner/name',
  ),
  projectBranch: setting(
    'CLAWDINATOR_PROJECT_BRANCH',
    () =>
      z
        .string()
        .regex(/^(?!\/|-)(?!.*(\.\.|\/\/|@\{|\.lock$|\/$))[A-Za-z0-9._/-]{1,200}$/)
        .default('main'),
    'a branch name like main',
  ),
  // The images (the slow lane): how many of ours prune keeps, when it runs, and an optional
  // scheduled rebuild (off unless a cron is given; it never rolls out by itself).
  amiKeep: setting(
    'CLAWDINATOR_AMI_KEEP',
    () => z.coerce.number().int().min(1).max(100).default(5),
    'a whole number from 1 to 100',
  ),
  amiPruneCron: setting(
    'CLAWDINATOR_AMI_PRUNE_CRON',
    () => cronPattern.default('0 5 * * 0'),
    'a cron pattern (UTC) like 0 5 * * 0',
  ),
  amiRebuildCron: setting(
    'CLAWDINATOR_AMI_REBUILD_CRON',
    () => cronPattern.optional(),
    'a cron pattern (UTC) like 0 4 * * 1',
  ),
  // The fast lane (/deploy, the self-update). A cron here, never a value in Redis: the schedule
  // is part of the fleet's configuration (unset: no self-update, as the original in production).
  selfUpdateCron: setting(
    'CLAWDINATOR_SELF_UPDATE_CRON',
    () => cronPattern.optional(),
    'a cron pattern (UTC) like 0 3 * * *',
  ),
  // How long a host's switch may take (nix builds, then the host's own health check).
  deploySwitchTimeoutSeconds: setting(
    'CLAWDINATOR_DEPLOY_SWITCH_TIMEOUT',
    () =>
      z.coerce
        .number()
        .int()
        .min(60)
        .max(4 * 3600)
        .default(1800),
    'seconds from 60 to 14400',
  ),
  // After a member's switch: how long until its heartbeat must report the revision.
  deployVerifySeconds: setting(
    'CLAWDINATOR_DEPLOY_VERIFY_TIMEOUT',
    () => z.coerce.number().int().min(10).max(3600).default(300),
    'seconds from 10 to 3600',
  ),
  // Between two looks at a host's switch and its heartbeat (each look at the switch is one
  // SendCommand and its GetCommandInvocation).
  deployPollSeconds: setting(
    'CLAWDINATOR_DEPLOY_POLL_SECONDS',
    () => z.coerce.number().int().min(1).max(300).default(15),
    'seconds from 1 to 300',
  ),
  amiBootMode: setting(
    'CLAWDINATOR_AMI_BOOT_MODE',
    () => z.enum(['legacy-bios', 'uefi']).default('legacy-bios'),
    'legacy-bios or uefi',
  ),
  amiArchitecture: setting(
    'CLAWDINATOR_AMI_ARCHITECTURE',
    () => z.enum(['x86_64', 'arm64']).default('x86_64'),
    'x86_64 or arm64',
  ),
  // What the builder builds, `{sha}` replaced by the resolved commit; default
  // github:<CLAWDINATOR_PROJECT_REPO>/{sha}#image (the flake's packages.x86_64-linux.image).
  amiFlake: setting(
    'CLAWDINATOR_AMI_FLAKE',
    () =>
      z
        .string()
        .regex(/^[A-Za-z0-9+.:/?&=_~%-]*\{sha\}[A-Za-z0-9+.:/?&=_~%-]*#[A-Za-z0-9._-]+$/)
        .optional(),
    'a flake reference with {sha} and an output, like git+ssh://git@github.com/o/r?rev={sha}#image',
  ),
  amiImportPollSeconds: setting(
    'CLAWDINATOR_AMI_IMPORT_POLL_SECONDS',
    () => z.coerce.number().int().min(1).max(600).default(30),
    'seconds from 1 to 600',
  ),
  // The agent runtime (lib/agent-config.ts): what every member's openclaw configuration
  // starts from; a member's registry entry (`agent`) overrides it.
  agentGuildId: setting(
    'CLAWDINATOR_AGENT_GUILD_ID',
    () => snowflake.optional(),
    'the Discord guild the agents answer in',
  ),
  agentChannelIds: setting(
    'CLAWDINATOR_AGENT_CHANNEL_IDS',
    () => snowflakes.max(50).default([]),
    'a JSON list of the channel ids the agents answer in (when mentioned)',
    true,
  ),
  agentModel: setting(
    'CLAWDINATOR_AGENT_MODEL',
    () => modelRef.default('openai/gpt-5.2-codex'),
    'a model like anthropic/claude-opus-4-6 (provider/model)',
  ),
  agentFallbackModels: setting(
    'CLAWDINATOR_AGENT_FALLBACK_MODELS',
    () => z.array(modelRef).max(5).default(['anthropic/claude-opus-4-6']),
    'a JSON list of up to 5 models (provider/model)',
    true,
  ),
  agentThinking: setting(
    'CLAWDINATOR_AGENT_THINKING',
    () => thinkingLevel.default('high'),
    'one of off, minimal, low, medium, high',
  ),
  agentMaxConcurrent: setting(
    'CLAWDINATOR_AGENT_MAX_CONCURRENT',
    () => z.coerce.number().int().min(1).max(16).default(4),
    'a whole number from 1 to 16',
  ),
  // Any other openclaw setting for every member, merged over the defaults; the same rules as a
  // member's override (the Discord interrupt rule, DMs off, loopback gateway).
  agentConfig: setting(
    'CLAWDINATOR_AGENT_CONFIG',
    () =>
      rawAgentConfig.default({}).superRefine((c, ctx) => {
        const problem = agentConfigProblem(c);
        if (problem !== null) ctx.addIssue({ code: z.ZodIssueCode.custom, message: problem });
      }),
    'a JSON object of openclaw settings (see README: the agent runtime)',
    true,
  ),
  // Providers the runtime cannot reach through the model proxy: provider id → the secret
  // (under clawdinator/fleet/) whose value the bootstrap gives the agent as a file.
  agentDirectKeys: setting(
    'CLAWDINATOR_AGENT_DIRECT_KEYS',
    () =>
      z
        .record(
          z.string().regex(/^[a-z][a-z0-9-]{0,40}$/),
          z.string().regex(/^clawdinator\/fleet\/[A-Za-z0-9/_+=.@-]{1,200}$/),
        )
        .refine(
          (m) => Object.keys(m).every((p) => !(p in PROXY_PROVIDERS)),
          'a provider the proxy serves keeps its key with the proxy',
        )
        .default({}),
    'a JSON map of provider id to a secret name under clawdinator/fleet/',
    true,
  ),
  // The runtime's state (logs, cron store, gateway token), outside the agent's home so that no
  // root-run part of the system (tmpfiles, systemd's log files) works inside a dir the agent owns.
  agentStateDir: setting(
    'CLAWDINATOR_AGENT_STATE_DIR',
    () => absolutePath.default('/var/lib/clawdinator-agent'),
    'an absolute directory path',
  ),
  // seed-workspace: the templates (the package's workspace/, /etc/clawdinator/workspace on a
  // host), the tool list the module renders at build time, and the hashes of what it seeded.
  workspaceTemplatesDir: setting(
    'CLAWDINATOR_WORKSPACE_TEMPLATES',
    () => absolutePath.default('/etc/clawdinator/workspace'),
    'an absolute directory path',
  ),
  toolsFile: setting(
    'CLAWDINATOR_TOOLS_FILE',
    () => absolutePath.default('/etc/clawdinator/tools.md'),
    'an absolute file path',
  ),
  workspaceManifest: setting(
    'CLAWDINATOR_WORKSPACE_MANIFEST',
    () => absolutePath.default('/var/lib/clawdinator-agent/workspace-seed.json'),
    'an absolute file path',
  ),
  // The model proxy (jobs/proxy/): a loopback port only the agent's uid may connect to
  // (nix/agent.nix's nftables rule), the keys only the ops user reads.
  modelProxyPort: setting(
    'CLAWDINATOR_MODEL_PROXY_PORT',
    () => z.coerce.number().int().min(1024).max(65_535).default(18_780),
    'a TCP port from 1024 to 65535',
  ),
  anthropicApiKeyFile: setting(
    'CLAWDINATOR_ANTHROPIC_API_KEY_FILE',
    () => absolutePath.optional(),
    'the path of the file holding the Anthropic API key',
  ),
  openaiApiKeyFile: setting(
    'CLAWDINATOR_OPENAI_API_KEY_FILE',
    () => absolutePath.optional(),
    'the path of the file holding the OpenAI API key',
  ),
  // Where each provider's requests go (tests point them at a loopback stand-in).
  modelUpstreams: setting(
    'CLAWDINATOR_MODEL_UPSTREAMS',
    () => z.object({ anthropic: httpOrigin.optional(), openai: httpOrigin.optional() }).strict().default({}),
    'a JSON map of anthropic/openai to an http(s) origin',
    true,
  ),
  // USD per million tokens; a key ending in * matches model ids by prefix (the longest wins).
  modelPrices: setting(
    'CLAWDINATOR_MODEL_PRICES',
    () =>
      z
        .record(
          z.string().regex(/^[A-Za-z0-9._:@/-]{1,100}\*?$/),
          z
            .object({
              input: z.number().min(0),
              output: z.number().min(0),
              cacheRead: z.number().min(0).optional(),
              cacheWrite: z.number().min(0).optional(),
            })
            .strict(),
        )
        .default({}),
    'a JSON map of model (or prefix*) to {input, output, cacheRead, cacheWrite} in USD per million tokens',
    true,
  ),
  // Per member per UTC day: crossing it posts one alert in the ops channel that day.
  modelDailyBudgetUsd: setting(
    'CLAWDINATOR_MODEL_DAILY_BUDGET_USD',
    () => z.coerce.number().positive().max(1_000_000).optional(),
    'US dollars per member per day, a positive number',
  ),
} satisfies Record<string, Setting<z.ZodTypeAny>>;

export type Settings = typeof settings;
export type SettingName = keyof Settings;
export type Config<K extends SettingName> = { [P in K]: z.output<ReturnType<Settings[P]['schema']>> };

export interface ConfigSource {
  env?: Record<string, string | undefined>;
}

/** Reads and validates the named settings; throws ConfigError naming the first bad one. */
export function loadConfig<K extends SettingName>(names: readonly K[], source: ConfigSource = {}): Config<K> {
  const env = source.env ?? process.env;
  const file = readConfigFile(env.CLAWDINATOR_CONFIG);
  const out: Record<string, unknown> = {};
  for (const name of names) {
    const def: Setting<z.ZodTypeAny> = settings[name];
    out[name] = parseSetting(name, def, env[def.env], file[name]);
  }
  return out as Config<K>;
}

/** Whether a setting is given at all (environment or config file), for optional parts of a command. */
export function hasSetting(name: SettingName, source: ConfigSource = {}): boolean {
  const env = source.env ?? process.env;
  const value = env[settings[name].env];
  if (value !== undefined && value !== '') return true;
  return readConfigFile(env.CLAWDINATOR_CONFIG)[name] !== undefined;
}

function parseSetting(name: string, def: Setting<z.ZodTypeAny>, envValue: string | undefined, fileValue: unknown) {
  let raw: unknown = fileValue;
  let where = `${name} in the config file`;
  if (envValue !== undefined && envValue !== '') {
    where = def.env;
    raw = envValue;
    if (def.json) {
      try {
        raw = JSON.parse(envValue);
      } catch {
        throw new ConfigError(`config: ${def.env} is not valid JSON: expected ${def.expected}`);
      }
    }
  } else if (fileValue === undefined) {
    where = `${def.env} (or ${name} in the config file)`;
  }
  const parsed = def.schema().safeParse(raw);
  if (!parsed.success) {
    const missing = raw === undefined;
    // For structured settings, say where inside the value it went wrong (never the value).
    const issue = parsed.error.issues[0];
    const at =
      issue && issue.path.length > 0
        ? ` (at ${issue.path.join('.')}: ${issue.message})`
        : issue?.code === 'custom'
          ? ` (${issue.message})`
          : '';
    throw new ConfigError(`config: ${where} ${missing ? 'is not set' : 'is invalid'}: expected ${def.expected}${at}`);
  }
  return parsed.data;
}

function readConfigFile(path: string | undefined): Record<string, unknown> {
  if (path === undefined || path === '') return {};
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new ConfigError(`config: CLAWDINATOR_CONFIG names ${path}, which cannot be read (${code})`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new ConfigError(`config: ${path} is not valid JSON`);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new ConfigError(`config: ${path} must hold a JSON object of settings`);
  }
  for (const key of Object.keys(data)) {
    if (!(key in settings)) throw new ConfigError(`config: ${path} has an unknown setting "${key}"`);
  }
  return data as Record<string, unknown>;
}

/**
 * Reads a secret from the file a `*_FILE` setting names. Errors name the setting and the
 * file, never the content.
 */
export function readSecretFile(path: string, settingEnv: string): string {
  let value: string;
  try {
    value = readFileSync(path, 'utf8').trim();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new ConfigError(`config: ${settingEnv} names ${path}, which cannot be read (${code})`);
  }
  if (value === '') throw new ConfigError(`config: ${settingEnv} names ${path}, which is empty`);
  return value;
}
