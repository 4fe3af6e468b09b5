// The simulated GitHub (jobs/github/sim.ts: App JWT verified with the test key pair's public
// key, tokens that expire, the org's GraphQL) with the App's installation pointed at it, and
// a fresh memory folder: what the GitHub tests of tokens and the org sync start from.
import { createGitHubInstallation, type GitHubInstallation } from '../../jobs/github/app.js';
import { type SimGitHub as Sim, SimGitHub, type SimOrg } from '../../jobs/github/sim.js';
import { initMemory } from '../../memory/init.js';
import { MemoryStore } from '../../memory/store.js';
import { tempDir } from './cli.js';
import { appKeyPair } from './github-standin.js';

export const APP_ID = '424242';
export const INSTALLATION_ID = '7777';
const key = appKeyPair();

export interface OrgWorld {
  sim: Sim;
  installation: GitHubInstallation;
  memory: MemoryStore;
  memoryDir: string;
  privateKeyPem: string;
  stop(): Promise<void>;
}

export async function orgWorld(
  org: SimOrg,
  options: { tokenLifetimeMs?: number; permissions?: Record<string, string>; memoryMaxBytes?: number } = {},
): Promise<OrgWorld> {
  const sim = await new SimGitHub({
    appId: APP_ID,
    installationId: INSTALLATION_ID,
    publicKey: key.publicKey,
    org,
    tokenLifetimeMs: options.tokenLifetimeMs,
    permissions: options.permissions,
  }).start();
  const installation = createGitHubInstallation({
    appId: APP_ID,
    installationId: INSTALLATION_ID,
    privateKeyPem: key.privateKeyPem,
    apiUrl: sim.url,
    // Retry waits in units of 10 ms instead of seconds: a retry-after of 1 s waits 10 ms.
    retryBaseMs: 10,
  });
  const memoryDir = tempDir('clawdinator-github-memory-');
  await initMemory(memoryDir);
  const memory = new MemoryStore({ root: memoryDir, maxBytes: options.memoryMaxBytes ?? 1024 * 1024, waitSeconds: 2 });
  return { sim, installation, memory, memoryDir, privateKeyPem: key.privateKeyPem, stop: () => sim.stop() };
}
