// The image module evaluated for real (nix-instantiate --eval, Debian's nix-bin) with a stub
// NixOS config: what the original's image host had (ec2-data, amazon-init, xen-blkfront and
// nvme in the initrd, ENA), the user data re-fetched through IMDSv2 before amazon-init, and the
// repart layout GRUB boots from (a BIOS boot partition, the root labelled nixos). The flake's
// image output points at it. Nothing is built: that needs nixpkgs and network.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectPath } from '../../lib/paths.js';
import { tempDir } from '../support/cli.js';

function hasNix(): boolean {
  try {
    execFileSync('nix-instantiate', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const STUB = `
let
  stub = {
    config = {
      system.build.toplevel = "/nix/store/toplevel";
      system.build.image = "/nix/store/repart";
      image.repart.imageFile = "clawdinator-nixos.raw";
      boot.kernelParams = [ "console=ttyS0" ];
      boot.kernelPackages.ena = "ena-module";
      nix.package.out = "/nix/store/nix";
    };
    lib = { };
    pkgs = { };
    modulesPath = "/nixpkgs/nixos/modules";
  };
  m = import ${projectPath('nix', 'image.nix')} stub;
in
{
  imports = m.imports;
  initrd = m.boot.initrd.kernelModules ++ m.boot.initrd.availableKernelModules;
  ena = m.boot.extraModulePackages;
  partitions = builtins.attrNames m.image.repart.partitions;
  bios = m.image.repart.partitions."00-bios".repartConfig;
  root = m.image.repart.partitions."10-root".repartConfig;
  rootContents = builtins.attrNames m.image.repart.partitions."10-root".contents;
  fetch = { inherit (m.systemd.services.clawdinator-fetch-user-data) before wantedBy; };
  amazonInit = m.systemd.services.amazon-init.after;
  script = m.systemd.services.clawdinator-fetch-user-data.script;
}
`;

describe.skipIf(!hasNix())('the image module (nix/image.nix)', () => {
  it('has the original image host’s parts and the repart layout GRUB boots', () => {
    const file = join(tempDir('clawdinator-nix-'), 'eval.nix');
    writeFileSync(file, STUB);
    const r = spawnSync('nix-instantiate', ['--eval', '--strict', '--json', file], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const m = JSON.parse(r.stdout);
    expect(m.imports).toEqual([
      '/nixpkgs/nixos/modules/image/repart.nix',
      '/nixpkgs/nixos/modules/virtualisation/ec2-data.nix',
      '/nixpkgs/nixos/modules/virtualisation/amazon-init.nix',
    ]);
    expect(m.initrd).toEqual(['xen-blkfront', 'nvme']);
    expect(m.ena).toEqual(['ena-module']);
    expect(m.partitions).toEqual(['00-bios', '10-root']);
    // GRUB's BIOS boot partition type; the root's label is what fileSystems."/" mounts.
    expect(m.bios).toMatchObject({ Type: '21686148-6449-6e6f-744e-656564454649', SizeMaxBytes: '1M' });
    expect(m.root).toEqual({ Type: 'root', Format: 'ext4', Label: 'nixos', Minimize: 'guess' });
    expect(m.rootContents).toEqual(['/boot/grub/grub.cfg', '/nix-path-registration']);
    expect(m.fetch).toEqual({ before: ['amazon-init.service'], wantedBy: ['multi-user.target'] });
    expect(m.amazonInit).toEqual(['clawdinator-fetch-user-data.service']);
    // IMDSv2: a token first, every read with it (our instances refuse IMDSv1).
    expect(m.script).toContain(
      '-X PUT \\\n  -H \'X-aws-ec2-metadata-token-ttl-seconds: 300\' "$imds/latest/api/token"',
    );
    expect(m.script).toContain('-H "X-aws-ec2-metadata-token: $token"');
  });

  it('is the flake’s packages.x86_64-linux.image, on the image configuration', () => {
    const r = spawnSync('nix-instantiate', ['--parse', projectPath('flake.nix')], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const flake = readFileSync(projectPath('flake.nix'), 'utf8');
    expect(flake).toContain(
      'x86_64-linux.image = self.nixosConfigurations.clawdinator-image.config.system.build.clawdinatorImage;',
    );
    expect(flake).toContain('clawdinator-image = (mkHost null).extendModules { modules = [ ./nix/image.nix ]; };');
  });
});
