// IAM is tested against the calls (DESIGN.md, Trust boundaries). The lifecycle jobs and the
// bootstrap run in the simulated cloud with the synthesized policies plugged in as its
// authorizer, so a call the policy does not allow fails there as it would on AWS; then every
// recorded call — and Terraform's own calls, from the table in terraform-calls.ts — is
// evaluated again with `@cloud-copilot/iam-simulate` against the policy of the principal that
// made it: deployer role for the jobs, the host's instance role (within the boundary) for the
// bootstrap. Every call allowed, except the expected denials, each with the fallback that
// handles it. Statements that no call needs are printed, and must be accounted for below.
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditTrail } from '../../jobs/audit.js';
import { bootstrap } from '../../jobs/bootstrap/install.js';
import type { AuthRequest, SimCallRecord } from '../../jobs/cloud/sim.js';
import type { JobContext } from '../../jobs/engine/job-type.js';
import { keys } from '../../jobs/engine/keys.js';
import { deployTokenSecret } from '../../jobs/fastlane/deps.js';
import { doctorMember, memberLogs } from '../../jobs/host/ops.js';
import { writeDeployToken } from '../../jobs/host/token.js';
import { publicHalf } from '../../jobs/signing.js';
import { fleetStatus } from '../../jobs/status.js';
import { type HealthSweepResult, healthSweep } from '../../jobs/types/health-sweep.js';
import { STRAY_CLEANUP } from '../../jobs/types/stray-cleanup.js';
import { createLogger } from '../../lib/log.js';
import { hostWorkers, rebuild, simAmiDeps } from '../support/ami.js';
import { tempDir } from '../support/cli.js';
import { SIM_AMI, SIM_BUCKET, simMember } from '../support/fleet.js';
import { testStepSigner } from '../support/jobs.js';
import { runDeploy, simLane } from '../support/lane.js';
import { lifecycleSuite, OPERATOR } from '../support/lifecycle.js';
import { evaluate, type PrincipalPolicies, synthesizedPolicies, type Verdict } from './policies.js';
import { terraformCalls } from './terraform-calls.js';

/** Denials the code expects, with what it does instead (the adapter's fallback). */
const EXPECTED_DENIALS: { principal: RegExp; action: string; fallback: string }[] = [
  {
    principal: /^instance:/,
    action: 'secretsmanager:BatchGetSecretValue',
    fallback: 'the adapter reads the secrets one by one with GetSecretValue (aws-secrets.ts)',
  },
];

/**
 * Statements no call of the jobs, the bootstrap or Terraform needs today, and why they stay.
 * A statement that is neither exercised nor listed here fails the test: remove it, or say why.
 */
const UNEXERCISED: Record<string, string> = {
  'deploy/FleetInstances': 'rebooting, stopping and retagging a member by hand (operators, `fleet doctor` later)',
  'deploy/FleetImages': 'the image prune (ami prune) deregisters our images and their snapshots',
  'deploy/TagImportedSnapshots':
    'the image rebuild tags the snapshot VM Import left untagged (rebuild-ami; not run under the policies here yet)',
  'deploy/Read': 'ListCommands, ListCommandInvocations and ListSecrets: `fleet logs` and operators',
  'own/AssumeDeployer': 'the worker assumes the deployer role (STS, not simulated here)',
  'AmazonSSMManagedInstanceCore/AmazonSSMManagedInstanceCore': 'the SSM agent itself',
};

const MEMBERS = ['clawdinator-1', 'clawdinator-2'];
// An older image that no member runs, for the prune to remove (seeded images: the last the newest).
const suite = lifecycleSuite({
  members: MEMBERS,
  tokens: ['clawdinator-3'],
  amis: [
    { name: 'clawdinator-nixos-old', imageId: 'ami-000000000000000d1' },
    { name: 'clawdinator-nixos', imageId: SIM_AMI },
  ],
});
let principals: Record<string, PrincipalPolicies>;
const used = new Set<string>();
const verdicts = new Map<string, Promise<Verdict>>();

/** One verdict per principal and request (the jobs repeat their calls). */
function verdictOf(principal: string, request: AuthRequest): Promise<Verdict> {
  const policies = principals[principal];
  if (policies === undefined) throw new Error(`no policies for principal ${principal}`);
  const key = JSON.stringify([principal, request]);
  let verdict = verdicts.get(key);
  if (verdict === undefined) {
    verdict = evaluate(policies, request);
    verdicts.set(key, verdict);
  }
  return verdict;
}

const expectedDenial = (principal: string, action: string) =>
  EXPECTED_DENIALS.some((d) => d.principal.test(principal) && d.action === action);

/** Every request of every record: allowed (its grants noted), or one of the expected denials. */
async function check(records: SimCallRecord[]): Promise<string[]> {
  const problems: string[] = [];
  for (const record of records) {
    for (const request of record.requests) {
      const v = await verdictOf(record.principal, request);
      const where = `${record.principal} ${record.operation}: ${request.action} on ${request.resource}`;
      if (v.error !== undefined) problems.push(`${where}: the simulator refused the request: ${v.error}`);
      if (v.ignored.length > 0) problems.push(`${where}: context keys that do not apply: ${v.ignored.join(', ')}`);
      for (const grant of v.grants) used.add(grant);
      if (v.allowed) continue;
      if (!expectedDenial(record.principal, request.action)) problems.push(`${where}: denied`);
    }
  }
  return problems;
}

beforeAll(async () => {
  const registry = Object.fromEntries(
    ['clawdinator-1', 'clawdinator-2', 'clawdinator-3'].map((n) => [n, { ...simMember(n) }]),
  );
  principals = await synthesizedPolicies(registry, join(tempDir('clawdinator-iam-'), 'cdktf.out'));
});

/** The sim fails, as AWS would, every call the principal's synthesized policy does not allow. */
function enforcePolicies(): void {
  suite.sim.cloud.setAuthorizer(async (principal, request) => (await verdictOf(principal, request)).allowed);
}

beforeEach(enforcePolicies);

afterAll(() => {
  const statements = Object.values(principals ?? {}).flatMap((p) =>
    p.identity.flatMap(({ name, policy }) => policy.Statement.map((s) => `${name}/${s.Sid ?? '?'}`)),
  );
  const unused = [...new Set(statements)].filter((s) => !used.has(s));
  if (unused.length > 0) process.stdout.write(`iam: statements no call needed: ${unused.join(', ')}\n`);
});

describe('IAM against the calls', () => {
  it('the lifecycle jobs, under the deployer role, make only calls its policy allows', async () => {
    const h = suite.harness();
    const spawn = await h.run('spawn', { name: 'clawdinator-3' });
    expect(spawn.failedReason).toBeUndefined();
    const replace = await h.run('replace', { name: 'clawdinator-3' });
    expect(replace.failedReason).toBeUndefined();
    const retire = await h.run('retire', { name: 'clawdinator-3' });
    expect(retire.failedReason).toBeUndefined();
    await fleetStatus({
      registry: async () => (await suite.sim.registry.read()).registry,
      cloud: suite.sim.cloud,
      redis: suite.redis,
      queues: [],
      workersKey: publicHalf(testStepSigner.key),
    });
    const records = suite.sim.cloud.records();
    expect(new Set(records.map((r) => r.principal))).toEqual(new Set(['deployer']));
    // What the jobs do, at least: a key secret made, the bundle written, instances launched and ended.
    const operations = new Set(records.map((r) => r.operation));
    for (const op of [
      'CreateSecret',
      'PutObject',
      'RunInstances',
      'TerminateInstances',
      'DescribeInstanceInformation',
    ]) {
      expect(operations).toContain(op);
    }
    expect(await check(records)).toEqual([]);
  });

  it('the health sweep (every minute) and stray-cleanup, under the deployer role: listing, terminating, retiring', async () => {
    // What a spawn that died after its launch leaves, and a member whose instance is gone:
    // made without the policy, as they are the situation, not what is tested.
    suite.sim.cloud.setAuthorizer(null);
    const stray = await suite.sim.cloud.launchInstance({
      name: 'clawdinator-9',
      ami: SIM_AMI,
      instanceType: 't3.large',
    });
    const gone = (await suite.sim.cloud.listFleetInstances()).find((i) => i.name === 'clawdinator-2');
    await suite.sim.cloud.terminateInstance(gone?.instanceId as string);
    await suite.redis.del(keys.heartbeat('clawdinator-2'));
    enforcePolicies();
    suite.sim.cloud.resetCalls();

    const sweep = healthSweep({ redis: suite.redis, fleet: async () => MEMBERS, cloud: suite.sim.cloud });
    const ctx = {
      jobId: 'repeat:clawdinator-health-sweep:1',
      data: {},
      principal: { kind: 'schedule', scheduler: 'clawdinator-health-sweep' },
      requestId: 'clawdinator-health-sweep',
      steps: undefined as never,
      signer: testStepSigner,
      log: createLogger('silent'),
      progress: async () => {},
    } satisfies JobContext<Record<string, never>>;
    const swept = (await sweep.run(ctx)) as HealthSweepResult;
    // EC2 answered under the policy: the stray is seen (an authorizer denial would be "unknown").
    expect(swept).toMatchObject({ strays: 1, unknown: 0 });

    const h = suite.harness();
    for (const [n, target] of [stray, 'clawdinator-2'].entries()) {
      const { jobId } = await h.enqueuer('operator').enqueue({
        type: STRAY_CLEANUP,
        data: { target },
        principal: OPERATOR,
        requestId: `iam-cleanup-${n}`,
      });
      const job = await h.finished(jobId);
      expect(job.failedReason).toBeUndefined();
    }
    const records = suite.sim.cloud.records();
    expect(new Set(records.map((r) => r.principal))).toEqual(new Set(['deployer']));
    const operations = new Set(records.map((r) => r.operation));
    for (const op of ['DescribeInstances', 'TerminateInstances', 'DeleteSecret']) {
      expect(operations).toContain(op);
    }
    expect(await check(records)).toEqual([]);
  });

  it('an image rebuild with a canary rollout and a prune, under the deployer role, make only calls its policy allows', async () => {
    const ami = simAmiDeps(suite.server, suite.sim);
    const h = suite.harness({ types: { ami } });
    const hosts = hostWorkers(suite.server, suite.redis, h, MEMBERS);
    suite.defer(() => hosts.close());
    const job = await rebuild(h, { rollout: 'canary' });
    expect(job.failedReason).toBeUndefined();
    const prune = await h.run('ami-prune', { keep: 1 } as never);
    expect(prune.failedReason).toBeUndefined();
    const operations = new Set(suite.sim.cloud.records().map((r) => r.operation));
    for (const op of ['ImportSnapshot', 'RegisterImage', 'CreateTags', 'RunInstances', 'DeregisterImage']) {
      expect(operations).toContain(op);
    }
    expect(await check(suite.sim.cloud.records())).toEqual([]);
  });

  it('the bootstrap and the audit, under the host instance role: its own bundle and secrets, audit objects', async () => {
    const h = suite.harness();
    const spawn = await h.run('spawn', { name: 'clawdinator-3' });
    expect(spawn.failedReason).toBeUndefined();
    // The fleet's Redis token, which `clawdinator infra init` makes with the operator's rights.
    suite.sim.cloud.setAuthorizer(null);
    await suite.sim.cloud.putSecret('clawdinator/fleet/redis-auth', 'redis-token', { clientToken: 'infra-init' });
    enforcePolicies();
    suite.sim.cloud.resetCalls();
    const host = suite.sim.cloud.actingAs('instance:clawdinator-3');
    const root = tempDir('clawdinator-iam-host-');
    const result = await bootstrap({
      cloud: host,
      identity: { name: 'clawdinator-3', host: 'clawdinator-3', bucket: SIM_BUCKET, prefix: 'bootstrap/clawdinator-3' },
      dirs: {
        state: join(root, 'state'),
        workspace: join(root, 'workspace'),
        repoSeeds: join(root, 'repo-seeds'),
        opsSecrets: join(root, 'ops-secrets'),
        agentSecrets: join(root, 'agent-secrets'),
      },
      switchCommand: [],
      log: () => {},
    });
    expect(result.action).toBe('installed');
    // The host's gateway and worker write the authoritative audit with the instance role.
    const trail = new AuditTrail({
      log: createLogger('silent'),
      memory: suite.sim.memory,
      bucket: SIM_BUCKET,
      cloud: async () => host,
      host: 'clawdinator-3',
    });
    await trail.record({ at: new Date(), line: '- audit line', fields: { kind: 'test' } });
    expect((await suite.sim.cloud.listKeys(SIM_BUCKET, 'audit/')).length).toBe(1);
    // The test's own look at the bucket (listKeys above) is the deployer's; the rest is the host's.
    const records = suite.sim.cloud.records().filter((r) => r.principal !== 'deployer');
    expect(records.map((r) => r.operation)).toContain('BatchGetSecretValue');
    expect(new Set(records.map((r) => r.principal))).toEqual(new Set(['instance:clawdinator-3']));
    expect(await check(records)).toEqual([]);

    // Another host's bundle and token: denied, as AWS would.
    await expect(host.getBytes(SIM_BUCKET, 'bootstrap/clawdinator-1/config.json')).rejects.toThrow(/AccessDenied/);
    await expect(host.getSecrets(['clawdinator/discord-token/clawdinator-1'])).rejects.toThrow(/AccessDenied/);
  });

  it('the fast lane and the host from chat: deploy, doctor and logs through our document only; the host reads its flake token', async () => {
    const tokens = { mint: async () => 'ghs_readonlyflaketoken0000000000000001' };
    const h = suite.harness({ types: { lane: simLane(suite.sim, { tokens }) } });
    const deploy = await runDeploy(h, {});
    expect(deploy.failedReason).toBeUndefined();
    const ops = { cloud: suite.sim.cloud, registry: async () => (await suite.sim.registry.read()).registry };
    expect((await doctorMember(ops, 'clawdinator-1')).checks.length).toBeGreaterThan(5);
    await memberLogs(ops, { name: 'clawdinator-2', unit: 'clawdinator-worker', lines: 10 });
    const records = suite.sim.cloud.records();
    expect(new Set(records.map((r) => r.principal))).toEqual(new Set(['deployer']));
    const sends = records.filter((r) => r.operation === 'SendCommand');
    expect(sends.length).toBeGreaterThan(MEMBERS.length);
    // Every command was our document on a fleet instance: never AWS-RunShellScript.
    for (const send of sends) {
      expect(send.requests.map((r) => r.resource.replace(/instance\/i-[0-9a-f]+$/, 'instance/*'))).toEqual([
        'arn:aws:ssm:eu-central-1:123456789012:document/clawdinator-host',
        'arn:aws:ec2:eu-central-1:123456789012:instance/*',
      ]);
    }
    const operations = new Set(records.map((r) => r.operation));
    for (const op of ['SendCommand', 'GetCommandInvocation', 'CreateSecret', 'DeleteSecret'])
      expect(operations).toContain(op);
    expect(await check(records)).toEqual([]);

    // On the host, the switch reads its own token with its instance role (and no other host's).
    suite.sim.cloud.resetCalls();
    await suite.sim.cloud.putSecret(deployTokenSecret('clawdinator-1'), 'ghs_readonlyflaketoken0000000000000001', {
      clientToken: 'iam-test',
    });
    const host = suite.sim.cloud.actingAs('instance:clawdinator-1');
    const dir = tempDir('clawdinator-iam-token-');
    expect(await writeDeployToken(host, 'clawdinator-1', join(dir, 'nix.conf'))).toBe(true);
    expect(await check(suite.sim.cloud.records().filter((r) => r.principal !== 'deployer'))).toEqual([]);
    await expect(writeDeployToken(host, 'clawdinator-2', join(dir, 'other.conf'))).rejects.toThrow(/AccessDenied/);
  });

  it("Terraform's own calls for a member's stack (the checked-in table) are allowed to the deployer", async () => {
    const calls = terraformCalls('clawdinator-3');
    const problems: string[] = [];
    for (const call of calls) {
      const v = await verdictOf('deployer', call);
      for (const grant of v.grants) used.add(grant);
      if (v.error !== undefined) problems.push(`${call.what}: ${call.action}: the simulator refused: ${v.error}`);
      if (v.ignored.length > 0) problems.push(`${call.what}: ${call.action}: keys that do not apply: ${v.ignored}`);
      if (!v.allowed) problems.push(`${call.what}: ${call.action} on ${call.resource}: denied`);
    }
    expect(problems).toEqual([]);
  });

  it('a policy that does not allow a call makes the job fail at that call (the test can fail)', async () => {
    // The deployer without its HostSecrets statement: the spawn's first cloud step is refused.
    const deployer = principals.deployer as PrincipalPolicies;
    const narrowed: PrincipalPolicies = {
      ...deployer,
      identity: deployer.identity.map(({ name, policy }) => ({
        name,
        policy: { ...policy, Statement: policy.Statement.filter((s) => s.Sid !== 'HostSecrets') },
      })),
    };
    suite.sim.cloud.setAuthorizer(async (principal, request) =>
      principal === 'deployer' ? (await evaluate(narrowed, request)).allowed : true,
    );
    const spawn = await suite.harness().run('spawn', { name: 'clawdinator-3' });
    expect(spawn.failedReason).toMatch(/agent-key.*AccessDeniedException|AccessDeniedException.*agent-key/);
    expect(suite.sim.cloud.calls.byOperation.RunInstances).toBeUndefined();
  });

  it('every statement is needed by a call, or listed with the reason it stays', () => {
    const statements = Object.values(principals).flatMap((p) =>
      p.identity.flatMap(({ name, policy }) => policy.Statement.map((s) => `${name}/${s.Sid ?? '?'}`)),
    );
    const unaccounted = [...new Set(statements)].filter((s) => !used.has(s) && UNEXERCISED[s] === undefined);
    expect(unaccounted).toEqual([]);
  });
});
