// Where the bootstrap puts the model keys: the proxied providers' keys go to the ops secrets
// dir (optional: a fleet without an OpenAI key still boots), a key the runtime must hold itself
// (CLAWDINATOR_AGENT_DIRECT_KEYS) to the agent's own — names only, never a value.
import { describe, expect, it } from 'vitest';
import { ANTHROPIC_KEY_SECRET, bundleConfig, OPENAI_KEY_SECRET } from '../../../jobs/bootstrap/bundle.js';

const input = {
  name: 'clawdinator-2',
  host: 'clawdinator-2',
  bootstrapPrefix: 'bootstrap/clawdinator-2',
  bucket: 'fleet-bucket',
  region: null,
  efsId: null,
  redisUrl: null,
  secrets: {
    discordToken: 'clawdinator/discord-token/clawdinator-2',
    agentKey: 'clawdinator/host/clawdinator-2/agent-key',
  },
};

describe('bundle config: model keys', () => {
  it('the proxied providers’ keys are the ops user’s, optional', () => {
    const { secrets } = bundleConfig(input);
    expect(secrets).toContainEqual({
      name: ANTHROPIC_KEY_SECRET,
      file: 'anthropic-api-key',
      owner: 'ops',
      required: false,
    });
    expect(secrets).toContainEqual({ name: OPENAI_KEY_SECRET, file: 'openai-api-key', owner: 'ops', required: false });
    expect(secrets.filter((s) => s.owner === 'agent').map((s) => s.file)).toEqual(['discord-token', 'agent-key.pem']);
  });

  it('a key the runtime holds itself goes to the agent’s secrets dir', () => {
    const { secrets } = bundleConfig({ ...input, agentKeys: { brave: 'clawdinator/fleet/brave-api-key' } });
    expect(secrets).toContainEqual({
      name: 'clawdinator/fleet/brave-api-key',
      file: 'model-key-brave',
      owner: 'agent',
      required: false,
    });
    // And never the proxied ones.
    expect(secrets.filter((s) => s.owner === 'agent' && /anthropic|openai/.test(s.name))).toEqual([]);
  });
});
