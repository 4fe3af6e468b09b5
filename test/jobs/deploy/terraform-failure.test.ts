// A spawn whose real terraform apply fails keeps terraform's cause: the real worker and spawn
// job on a real redis-server, the Terraform deployer with the real runner and terraform, on a
// stand-in of the member's stack made of a built-in `terraform_data` resource (the AWS
// provider cannot be downloaded here) whose postcondition fails at apply, as a provider error
// would. Terraform's error is in the job's log as terraform printed it, and its summary and
// detail are in the final message and the audit line — a planted secret in neither. The undo
// destroys what the failed apply left in the state, with real terraform.
// biome-ignore-all lint/suspicious/noTemplateCurlyInString: Terraform interpolations, not JavaScript templates
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { SynthOptions } from '../../../infra/app.js';
import { TerraformDeployer } from '../../../jobs/deploy/terraform.js';
import { keys } from '../../../jobs/engine/keys.js';
import { Terraform } from '../../../jobs/terraform/runner.js';
import { SIM_INFRA_SETTINGS } from '../../support/fleet.js';
import { lifecycleSuite } from '../../support/lifecycle.js';
import { HAS_TERRAFORM, TERRAFORM } from '../terraform/tf-stack.js';

const NAME = 'clawdinator-3';
const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
const CAUSE =
  'i-0standin000000003 did not reach running: Server.InsufficientInstanceCapacity: We currently do not have sufficient t3.large capacity in the Availability Zone you requested (eu-central-1a).';

/** The member's stack as a stand-in: its instance fails its postcondition once created. */
const stack = {
  terraform: { backend: { local: {} } },
  variable: {
    state_bucket: { type: 'string' },
    state_region: { type: 'string', default: '' },
    job_id: { type: 'string', default: '' },
  },
  resource: {
    terraform_data: {
      host: {
        input: NAME,
        lifecycle: [
          {
            postcondition: [
              {
                condition: '${self.output == "never"}',
                error_message: `${CAUSE} (aws_secret_access_key=${SECRET})`,
              },
            ],
          },
        ],
      },
    },
  },
  output: { instance_id: { value: '${terraform_data.host.id}' } },
};

const suite = lifecycleSuite();

describe.skipIf(!HAS_TERRAFORM)('a spawn whose real terraform apply fails', () => {
  it('keeps terraform’s error in the job’s log and its cause in the final message; the undo destroys what it left', async () => {
    const { sim, redis } = suite;
    const h = suite.harness({
      deployer: () =>
        new TerraformDeployer({
          cloud: sim.cloud,
          addresses: { instance: 'terraform_data.host' },
          runner: new Terraform({ bin: TERRAFORM, killGraceMs: 5_000 }),
          registry: sim.registry,
          settings: SIM_INFRA_SETTINGS,
          outdir: join(sim.dir, 'tf'),
          stateBucket: 'state',
          synth: async (o: SynthOptions) => {
            const dir = join(o.outdir as string, 'stacks', NAME);
            mkdirSync(dir, { recursive: true });
            writeFileSync(join(dir, 'cdk.tf.json'), JSON.stringify(stack));
            return { outdir: o.outdir as string, dirs: { [NAME]: dir }, withoutAmi: [] };
          },
        }),
    });
    const job = await h.run('spawn', { name: NAME });
    const jobId = job.id as string;
    expect(job.attemptsMade).toBe(3);
    const cause = `Resource postcondition failed: ${CAUSE} (aws_secret_access_key=[redacted])`;
    expect(job.failedReason).toBe(
      `${NAME}: apply failed: terraform plan failed for ${NAME}: ${cause}; undone: no registry entry, host key or bundle left`,
    );

    // Terraform's own lines, in the job's log in Redis (what `jobs show` prints).
    const { logs } = await h.queue.getJobLogs(jobId);
    expect(logs).toContain('Error: Resource postcondition failed');
    expect(logs).toContain(`  ${CAUSE} (aws_secret_access_key=[redacted])`);
    expect(logs).toContain('terraform_data.host: Creating...');
    expect(logs).toEqual(
      expect.arrayContaining([expect.stringMatching(/^terraform_data\.host: Destroying\.\.\. \[id=/)]),
    );

    const [result] = (await redis.xrange(keys.events, '-', '+'))
      .map(([, f]) => JSON.parse(f[1] as string).event)
      .filter((e) => e.kind === 'result' && e.jobId === jobId);
    expect(result?.text).toBe(
      `spawn ${NAME} failed at apply: terraform plan failed for ${NAME}: ${cause}. Undone: destroyed 0 to add, 0 to change, 1 to destroy: terraform_data.host (delete). Nothing was left behind; run \`clawdinator fleet spawn ${NAME}\` again.`,
    );
    expect(logs.at(-1)).toBe(`ended: ${result?.text}`);
    const audit = (await sim.memory.read(`audit/${new Date().toISOString().slice(0, 10)}.md`)).content.toString();
    expect(audit).toContain(`job=${jobId} operator ops spawn name:${NAME} → failed: ${result?.text}`);
    // The secret is in no output.
    const outputs = [JSON.stringify(logs), JSON.stringify(result), job.failedReason, audit].join('\n');
    expect(outputs).not.toContain(SECRET);
    expect(Object.keys((await sim.registry.read()).registry)).toEqual(['clawdinator-1']);
  });
});
