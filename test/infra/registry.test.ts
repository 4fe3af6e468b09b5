// The fleet registry: the example file parses; each kind of bad entry is refused with one
// line naming the file, the entry and what is wrong.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseRegistry, RegistryError, readRegistry } from '../../infra/registry.js';
import { NAME_RULE } from '../../lib/config.js';
import { EXIT_USAGE } from '../../lib/errors.js';
import { projectPath } from '../../lib/paths.js';
import { tempDir } from '../support/cli.js';

/** 41 characters: one more than IAM's role and session names leave for a fleet name. */
const LONG_NAME = `clawdinator-${'a'.repeat(29)}`;

const good = {
  host: 'clawdinator-2',
  instanceType: 't3.large',
  bootstrapPrefix: 'bootstrap/clawdinator-2',
  discordTokenSecret: 'clawdinator/discord-token/clawdinator-2',
};

function refusal(data: unknown): string {
  try {
    parseRegistry(data, 'fleet.json');
  } catch (err) {
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).exitCode).toBe(EXIT_USAGE);
    const message = (err as Error).message;
    expect(message).not.toContain('\n');
    return message;
  }
  throw new Error('accepted');
}

describe('fleet registry', () => {
  it('reads the example registry (the original instances.json schema plus ami)', () => {
    const registry = readRegistry(projectPath('infra', 'fleet.json'));
    expect(registry['clawdinator-1']).toMatchObject({ instanceType: 't3.large', ami: expect.stringMatching(/^ami-/) });
  });

  it('takes an entry of the original schema as is: ami and agentPublicKey are optional', () => {
    expect(parseRegistry({ 'clawdinator-2': good }, 'fleet.json')).toEqual({ 'clawdinator-2': good });
  });

  it.each([
    [{ 'worker-1': good }, `fleet registry fleet.json: "worker-1" is not a valid name (${NAME_RULE})`],
    // A host name NixOS refuses (after the instance would exist), and one longer than IAM's limits allow.
    [{ 'clawdinator-3-': good }, `fleet registry fleet.json: "clawdinator-3-" is not a valid name (${NAME_RULE})`],
    [{ 'clawdinator--3': good }, `fleet registry fleet.json: "clawdinator--3" is not a valid name (${NAME_RULE})`],
    [{ [LONG_NAME]: good }, `fleet registry fleet.json: "${LONG_NAME}" is not a valid name (${NAME_RULE})`],
    [
      { 'clawdinator-2': { ...good, host: 'clawdinator-2-' } },
      'fleet registry fleet.json: clawdinator-2: host must be a host name (a-z, 0-9, single "-" between them)',
    ],
    [
      {
        'clawdinator-2': good,
        'clawdinator-3': {
          ...good,
          bootstrapPrefix: 'bootstrap/clawdinator-3',
          discordTokenSecret: 'clawdinator/discord-token/clawdinator-3',
        },
      },
      'fleet registry fleet.json: clawdinator-2 and clawdinator-3 share the host name clawdinator-2',
    ],
    [{ 'clawdinator-2': { ...good, host: undefined } }, 'fleet registry fleet.json: clawdinator-2: host is missing'],
    [
      { 'clawdinator-2': { ...good, instanceType: 'large' } },
      'fleet registry fleet.json: clawdinator-2: instanceType must be an EC2 instance type like t3.large',
    ],
    [
      { 'clawdinator-2': { ...good, instancetype: 't3.large' } },
      'fleet registry fleet.json: clawdinator-2: unknown field "instancetype"',
    ],
    [
      { 'clawdinator-2': { ...good, ami: 'latest' } },
      'fleet registry fleet.json: clawdinator-2: ami must be an AMI id like ami-0123456789abcdef0',
    ],
    [
      { 'clawdinator-2': { ...good, bootstrapPrefix: 'bootstrap/../other' } },
      'fleet registry fleet.json: clawdinator-2: bootstrapPrefix must be an S3 key prefix without "..", "//" or a trailing "/"',
    ],
    [
      { 'clawdinator-2': { ...good, discordTokenSecret: 'clawdinator/discord-token/*' } },
      'fleet registry fleet.json: clawdinator-2: discordTokenSecret must be a secret name under clawdinator/ (no wildcards)',
    ],
    [
      { 'clawdinator-2': { ...good, discordTokenSecret: 'clawdinator/fleet/discord-token' } },
      'fleet registry fleet.json: clawdinator-2: discordTokenSecret must not be under clawdinator/fleet/ or clawdinator/host/',
    ],
    [
      {
        'clawdinator-2': good,
        'clawdinator-3': {
          ...good,
          host: 'clawdinator-3',
          bootstrapPrefix: 'bootstrap/clawdinator-2/x',
          discordTokenSecret: 'clawdinator/t3',
        },
      },
      'fleet registry fleet.json: the bootstrap prefixes of clawdinator-2 and clawdinator-3 overlap',
    ],
    [
      {
        'clawdinator-2': good,
        'clawdinator-3': { ...good, host: 'clawdinator-3', bootstrapPrefix: 'bootstrap/clawdinator-3' },
      },
      'fleet registry fleet.json: clawdinator-2 and clawdinator-3 share the Discord token secret',
    ],
    [[good], 'fleet registry fleet.json: expected a JSON object of name → entry'],
  ])('refuses a bad registry in one line: %#', (data, message) => {
    expect(refusal(data)).toBe(message);
  });

  it('says when the file is not JSON or cannot be read', () => {
    const dir = tempDir();
    const path = join(dir, 'fleet.json');
    writeFileSync(path, '{ "clawdinator-1": ');
    expect(() => readRegistry(path)).toThrow(`fleet registry ${path} is not valid JSON`);
    expect(() => readRegistry(join(dir, 'missing.json'))).toThrow(/cannot be read \(ENOENT\)$/);
  });
});
