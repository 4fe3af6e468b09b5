// Building the raw disk image of a commit. In production: `nix build` of the flake's
// `packages.x86_64-linux.image` (nix/image.nix: nixpkgs' systemd-repart image builder,
// `image.repart`, which needs no VM — nixpkgs' make-disk-image boots one and wants KVM, which
// t3 members lack — so any member can build). In the sandbox: a stand-in that writes a small,
// clearly labelled file instead.
//
// Only a resolved 40-hex sha reaches the command line, as an argument (no shell).
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { OperationError, UsageError } from '../../lib/errors.js';
import type { FaultRegistry } from '../cloud/sim-faults.js';

export interface BuiltImage {
  /** The raw image file. */
  path: string;
  size: number;
  /** Hex SHA-256 of the file (the upload stores and checks it). */
  sha256: string;
}

export interface BuildRequest {
  sha: string;
  /** Build output, line by line (bounded by the caller before it is kept). */
  onLine: (line: string) => void;
  signal?: AbortSignal;
}

export interface ImageBuilder {
  /** What builds, for progress and the job's log: "nix build (image.repart)", the stand-in. */
  readonly kind: string;
  build(request: BuildRequest): Promise<BuiltImage>;
}

const FULL_SHA = /^[0-9a-f]{40}$/;

function checkSha(sha: string): void {
  if (!FULL_SHA.test(sha)) throw new UsageError(`build: ${sha.slice(0, 60)} is not a full commit sha`);
}

export async function hashFile(path: string): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { size, sha256: hash.digest('hex') };
}

export interface NixBuilderOptions {
  /** A flake reference with `{sha}`, e.g. github:owner/repo/{sha}#image. */
  flake: string;
  /** `nix` from PATH unless told. */
  bin?: string;
}

/** The flake reference of the project's image at a commit, from settings. */
export function imageFlake(repo: string, template?: string): string {
  return template ?? `github:${repo}/{sha}#image`;
}

export class NixImageBuilder implements ImageBuilder {
  readonly kind = 'nix build (image.repart)';
  constructor(private readonly options: NixBuilderOptions) {}

  async build(request: BuildRequest): Promise<BuiltImage> {
    checkSha(request.sha);
    const ref = this.options.flake.replaceAll('{sha}', request.sha);
    const bin = this.options.bin ?? 'nix';
    const args = [
      'build',
      '--no-link',
      '--print-out-paths',
      '--print-build-logs',
      '--extra-experimental-features',
      'nix-command flakes',
      ref,
    ];
    request.onLine(`${bin} ${args.join(' ')}`);
    const out = await run(bin, args, request);
    const storePath = out.trim().split('\n').at(-1)?.trim() ?? '';
    if (!storePath.startsWith('/')) throw new OperationError(`build: ${bin} build printed no output path`);
    const path = await findRawImage(storePath);
    return { path, ...(await hashFile(path)) };
  }
}

/** The output is the image itself or a folder holding one `.raw` file (image.repart's). */
async function findRawImage(storePath: string): Promise<string> {
  const st = await stat(storePath);
  if (st.isFile()) return storePath;
  const raws = (await readdir(storePath)).filter((f) => f.endsWith('.raw'));
  if (raws.length !== 1) {
    throw new OperationError(`build: expected one .raw image in ${storePath}, found ${raws.length}`);
  }
  return join(storePath, raws[0] as string);
}

function run(bin: string, args: string[], request: BuildRequest): Promise<string> {
  return new Promise((resolve, reject) => {
    // Its own process group, so a cancel reaches nix's children too.
    const child = spawn(bin, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], signal: request.signal });
    let stdout = '';
    const tail: string[] = [];
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    createInterface({ input: child.stderr }).on('line', (line) => {
      request.onLine(line);
      tail.push(line);
      if (tail.length > 5) tail.shift();
    });
    child.on('error', (err) => {
      const code = (err as NodeJS.ErrnoException).code ?? err.message;
      reject(new OperationError(`build: cannot run ${bin} (${code}): the builder needs Nix with flakes`));
    });
    child.on('close', (code) => {
      if (code === 0) resolve(stdout);
      else {
        const last = tail.filter((l) => l.trim() !== '').at(-1) ?? 'no output';
        reject(new OperationError(`build: ${bin} build exited ${code ?? 'on a signal'}: ${last.slice(0, 300)}`));
      }
    });
  });
}

/**
 * The sandbox's build: no Nix, no disk image — a small file saying what it stands for, so the
 * rest of the pipeline (upload, import, register, rollout) runs on real bytes. A `build`
 * fault armed in the simulated world makes it fail as a nix build would.
 */
export class StandInImageBuilder implements ImageBuilder {
  readonly kind = 'sandbox stand-in (writes a small labelled file, not a disk image)';
  constructor(
    private readonly dir: string,
    private readonly faults?: FaultRegistry,
  ) {
    faults?.define('build', 'the sandbox’s stand-in image build (as a failed nix build)');
  }

  async build(request: BuildRequest): Promise<BuiltImage> {
    checkSha(request.sha);
    const fault = this.faults?.take('build');
    if (fault !== undefined) {
      throw new OperationError(`build: nix build exited 1: ${fault.message ?? 'simulated build failure'}`);
    }
    await mkdir(this.dir, { recursive: true });
    const path = join(this.dir, `clawdinator-stand-in-${request.sha.slice(0, 12)}.raw`);
    request.onLine(`stand-in build of ${request.sha}: writing ${path}`);
    await writeFile(
      path,
      [
        'CLAWDINATOR SANDBOX STAND-IN IMAGE',
        'Not a disk image: the sandbox writes this file where a real builder runs',
        `nix build github:<repo>/${request.sha}#image (nix/image.nix, image.repart).`,
        `revision ${request.sha}`,
        '',
      ].join('\n'),
    );
    return { path, ...(await hashFile(path)) };
  }
}
