// A terraform failure keeps its cause: the runner's error carries the first error's summary
// and the first paragraph of its detail, unwrapped — not a wrapped line cut before the cause
// ("…for provider hashicorp/aws:"). Real terraform where it runs: an init that cannot reach a
// provider registry (".invalid" never resolves, RFC 2606) and an apply whose postcondition
// fails; and the text terraform printed for the AWS provider on a host without network.
// biome-ignore-all lint/suspicious/noTemplateCurlyInString: Terraform interpolations, not JavaScript templates
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { diagnosticsIn, terraformCause } from '../../../jobs/terraform/process.js';
import { Terraform } from '../../../jobs/terraform/runner.js';
import { HAS_TERRAFORM, newStack, TERRAFORM } from './tf-stack.js';

const tf = new Terraform({ bin: TERRAFORM, killGraceMs: 5_000 });
const lines: string[] = [];
const ctx = { onLine: (line: string) => lines.push(line) };

describe('the cause of a terraform failure', () => {
  it('is the summary and the first paragraph of the detail, unwrapped', () => {
    // What `terraform init` printed for the AWS provider here, without network.
    const printed = [
      'Initializing provider plugins...',
      '- Finding latest version of hashicorp/aws...',
      '',
      'Error: Failed to query available provider packages',
      '',
      'Could not retrieve the list of available versions for provider',
      'hashicorp/aws: could not connect to registry.terraform.io: failed to request',
      'discovery document: Get',
      '"https://registry.terraform.io/.well-known/terraform.json": dial tcp: lookup',
      'registry.terraform.io on 10.255.255.53:53: no such host',
      '',
      'To see which modules are currently depending on hashicorp/aws and what',
      'versions are specified, run the following command:',
      '    terraform providers',
    ].join('\n');
    expect(terraformCause(diagnosticsIn(printed))).toBe(
      'Failed to query available provider packages: Could not retrieve the list of available versions for provider hashicorp/aws: could not connect to registry.terraform.io: failed to request discovery document: Get "https://registry.terraform.io/.well-known/terraform.json": dial tcp: lookup registry.terraform.io on 10.255.255.53:53: no such host',
    );
    // In a box, as terraform prints diagnostics to a terminal.
    const boxed = ['╷', '│ Error: Invalid AMI ID', '│ ', '│ ami-0dead does not exist in', '│ eu-central-1.', '╵'];
    expect(terraformCause(diagnosticsIn(boxed.join('\n')))).toBe(
      'Invalid AMI ID: ami-0dead does not exist in eu-central-1.',
    );
    expect(terraformCause(diagnosticsIn('Error: Unsupported argument'))).toBe('Unsupported argument');
  });

  it.skipIf(!HAS_TERRAFORM)('real terraform: an init that cannot reach its provider says why', async () => {
    const dir = newStack({ one: { input: 'a' } });
    const config = JSON.parse(
      JSON.stringify({
        terraform: { required_providers: { thing: { source: 'registry.invalid/acme/thing' } } },
        resource: { terraform_data: { one: { input: 'a' } } },
      }),
    );
    writeFileSync(join(dir, 'main.tf.json'), JSON.stringify(config));
    const failed = tf.plan({ stack: 'demo', dir }, ctx);
    await expect(failed).rejects.toThrow(
      /^terraform init failed for demo: Failed to query available provider packages: Could not retrieve the list of available versions for provider registry\.invalid\/acme\/thing: could not connect to registry\.invalid: .*no such host/,
    );
  });

  it.skipIf(!HAS_TERRAFORM)('real terraform: an apply whose postcondition fails says why', async () => {
    const message =
      'i-0standin000000003 did not reach running: Server.InsufficientInstanceCapacity: We currently do not have sufficient t3.large capacity in the Availability Zone you requested (eu-central-1a).';
    const dir = newStack({
      one: {
        input: 'a',
        lifecycle: [{ postcondition: [{ condition: '${self.output == "never"}', error_message: message }] }],
      },
    });
    const plan = await tf.plan({ stack: 'demo', dir }, ctx);
    await expect(tf.apply(plan, ctx)).rejects.toThrow(
      `terraform apply failed for demo: Resource postcondition failed: ${message}`,
    );
    expect(lines).toContain('Error: Resource postcondition failed');
    expect(lines).toContain(`  ${message}`);
  });
});
