// `clawdinator host …`: what the host script (nix/host/clawdinator-host.sh, run as root by
// SSM through our document) needs from this project's code on the host itself.
//   host redact         stdin → stdout with every secret this host holds replaced (by value:
//                       each file under the ops and agent secrets dirs; and by pattern). The
//                       script pipes everything that leaves the host through it, and prints
//                       nothing when it fails: fail closed.
//   host deploy-token   this host's read-only token for the project's flake (the secret the
//                       deploy job stored for this switch, read with the instance role) as a
//                       nix configuration file: `access-tokens = github.com=…`, created 0400,
//                       never on a command line. Nothing written when there is none (a public
//                       flake needs none).
import { constants } from 'node:fs';
import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Command } from 'commander';
import { loadConfig } from '../lib/config.js';
import { OperationError } from '../lib/errors.js';

/** A secret file larger than this is not a secret (a planted file must not blow up memory). */
const SECRET_MAX = 64 * 1024;
/** What `redact` reads from stdin at most (SSM keeps 24 000 characters anyway). */
const INPUT_MAX = 8 * 1024 * 1024;

export function command(): Command {
  const host = new Command('host').description('what the host script needs on a host: redact, deploy-token');
  host
    .command('redact')
    .description('copy stdin to stdout with every secret this host holds (and anything shaped like one) replaced')
    .option('--secrets-dir <dir...>', 'the dirs whose files are secrets (default: the ops and agent secrets dirs)')
    .action(async (opts: { secretsDir?: string[] }) => {
      const dirs = opts.secretsDir ?? defaultSecretsDirs();
      const values = (await Promise.all(dirs.map(secretValues))).flat();
      const { redactor, inertLines } = await import('../jobs/host/redact.js');
      const input = await readStdin();
      process.stdout.write(redactor(values)(inertLines(input)));
    });
  host
    .command('deploy-token')
    .description('write this host’s read-only flake token (if the deploy stored one) as a 0400 nix configuration file')
    .requiredOption('--out <file>', 'where (a new file: never overwritten)')
    .action(async (opts: { out: string }) => {
      const config = loadConfig(['instanceEnvFile', 'imdsUrl', 'awsRegion']);
      const [{ Imds, imdsEndpoint, readInstanceEnv }, { createAwsCloud }, { writeDeployToken }] = await Promise.all([
        import('../jobs/bootstrap/identity.js'),
        import('../jobs/cloud/aws.js'),
        import('../jobs/host/token.js'),
      ]);
      const identity = await readInstanceEnv(config.instanceEnvFile);
      if (identity === null) throw new OperationError(`host: ${config.instanceEnvFile} is missing: not bootstrapped`);
      // The instance role's own credentials: the host reads its own secret, nothing else.
      const imds = new Imds(imdsEndpoint(config.imdsUrl), { label: 'deploy-token' });
      const region = config.awsRegion ?? (await imds.region());
      const written = await writeDeployToken(createAwsCloud({ region }), identity.name, opts.out);
      process.stdout.write(
        written ? 'deploy-token: written\n' : 'deploy-token: none stored (the flake is fetched without one)\n',
      );
    });
  return host;
}

function defaultSecretsDirs(): string[] {
  const config = loadConfig(['opsSecretsDir', 'agentSecretsDir']);
  return [config.opsSecretsDir, config.agentSecretsDir];
}

/** The contents of the regular files directly in `dir` (a missing dir holds none). */
async function secretValues(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new OperationError(`host redact: cannot list ${dir} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const values: string[] = [];
  for (const name of names) {
    let file: Awaited<ReturnType<typeof open>> | undefined;
    try {
      // No link followed, a FIFO never waited on, nothing but a small regular file read.
      file = await open(join(dir, name), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
      const stat = await file.stat();
      if (!stat.isFile() || stat.size > SECRET_MAX) continue;
      values.push((await file.readFile()).toString('utf8'));
    } catch {
      // Not a file we can read as one: nothing to redact by its value.
    } finally {
      await file?.close();
    }
  }
  return values;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    size += (chunk as Buffer).length;
    if (size > INPUT_MAX) throw new OperationError(`host redact: more than ${INPUT_MAX} bytes of input`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
