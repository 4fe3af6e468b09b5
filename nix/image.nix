# The raw disk image every AMI is imported from: the image configuration (the flake's
# nixosConfigurations.clawdinator-image, nix/hosts/clawdinator.nix with no instance name) as a
# GPT disk, the flake's packages.x86_64-linux.image.
#
# Built with nixpkgs' systemd-repart image builder (image.repart), not make-disk-image: repart
# writes the partitions and file systems from the build sandbox without booting a VM, so no
# KVM is needed and any fleet member (t3 instances have no nested virtualisation) or a laptop
# with Nix can build it: `nix build .#image` → result/clawdinator-nixos.raw.
#
# The AMI boots legacy BIOS (registered `legacy-bios`, as the original's: its UEFI image did not
# boot). GRUB's i386-pc boot code goes into the protective MBR and its core image into a 1 MiB
# BIOS boot partition, written into the image file by grub-bios-setup after repart; the first
# grub.cfg boots the system closure directly. The original pointed GRUB at /dev/vda because its
# image was assembled inside a QEMU VM; here no VM exists, and after the bootstrap's first
# switch NixOS's own GRUB install (amazon-image.nix: /dev/xvda) takes over.
#
# Beside amazon-image.nix (imported by the host configuration), what the original's image host
# had: ec2-data + amazon-init (user data runs at boot), nvme and xen-blkfront in the initrd, the
# ENA driver, and a unit that re-fetches the user data from IMDS when it is missing — the
# initrd asks IMDSv1, which our instances refuse (IMDSv2 only, hop limit 1).
#
# This file parses in CI (nix-instantiate --parse); a build needs Nix and network.
{
  config,
  lib,
  pkgs,
  modulesPath,
  ...
}:
let
  toplevel = config.system.build.toplevel;
  closure = pkgs.closureInfo { rootPaths = [ toplevel ]; };
  # The first boot's menu; the bootstrap's switch writes NixOS's own.
  grubCfg = pkgs.writeText "grub.cfg" ''
    set timeout=0
    search --no-floppy --label nixos --set=root
    linux ${toplevel}/kernel init=${toplevel}/init ${toString config.boot.kernelParams}
    initrd ${toplevel}/initrd
    boot
  '';
  # GRUB embeds its core image in this partition on a GPT disk.
  biosBootType = "21686148-6449-6e6f-744e-656564454649";
  repart = config.system.build.image;
in
{
  imports = [
    "${modulesPath}/image/repart.nix"
    "${modulesPath}/virtualisation/ec2-data.nix"
    "${modulesPath}/virtualisation/amazon-init.nix"
  ];

  boot.initrd.availableKernelModules = [ "nvme" ];
  boot.initrd.kernelModules = [ "xen-blkfront" ];
  boot.extraModulePackages = [ config.boot.kernelPackages.ena ];

  # The Nix database of the closure copied into the image, loaded once at the first boot so
  # the bootstrap's `nixos-rebuild switch` sees those paths as valid.
  boot.postBootCommands = ''
    if [ -f /nix-path-registration ]; then
      ${config.nix.package.out}/bin/nix-store --load-db < /nix-path-registration && rm /nix-path-registration
    fi
  '';

  # The user data through IMDSv2 (a token first), for amazon-init, when the initrd's IMDSv1
  # fetch left it missing. Root only: the nftables rule of the module keeps IMDS from the agent.
  systemd.services.clawdinator-fetch-user-data = {
    description = "Fetch the EC2 user data through IMDSv2 when it is missing";
    wantedBy = [ "multi-user.target" ];
    wants = [ "network-online.target" ];
    after = [ "network-online.target" ];
    before = [ "amazon-init.service" ];
    path = [
      pkgs.curl
      pkgs.coreutils
    ];
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
    };
    script = ''
      meta=/etc/ec2-metadata
      mkdir -p -m 0755 "$meta"
      if [ -s "$meta/user-data" ]; then exit 0; fi
      imds=http://169.254.169.254
      token=$(curl -sS --fail --retry 5 --retry-delay 1 --connect-timeout 2 -X PUT \
        -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' "$imds/latest/api/token")
      (umask 077 && curl -sS --fail --retry 5 --retry-delay 1 --connect-timeout 2 \
        -H "X-aws-ec2-metadata-token: $token" -o "$meta/user-data.tmp" "$imds/latest/user-data")
      mv "$meta/user-data.tmp" "$meta/user-data"
    '';
  };
  systemd.services.amazon-init = {
    wants = [ "clawdinator-fetch-user-data.service" ];
    after = [ "clawdinator-fetch-user-data.service" ];
  };

  image.repart = {
    name = "clawdinator-nixos";
    partitions = {
      "00-bios" = {
        repartConfig = {
          Type = biosBootType;
          Label = "bios-boot";
          SizeMinBytes = "1M";
          SizeMaxBytes = "1M";
        };
      };
      "10-root" = {
        storePaths = [ toplevel ];
        contents = {
          "/boot/grub/grub.cfg".source = grubCfg;
          "/nix-path-registration".source = "${closure}/registration";
        };
        repartConfig = {
          Type = "root";
          Format = "ext4";
          # Also the file system's label: fileSystems."/" is /dev/disk/by-label/nixos.
          Label = "nixos";
          Minimize = "guess";
        };
      };
    };
  };

  # repart's image with GRUB's BIOS boot code written into it (no loop device, no root: the
  # device map points GRUB's tools at the image file).
  system.build.clawdinatorImage =
    pkgs.runCommand "clawdinator-nixos-image" { nativeBuildInputs = [ pkgs.grub2 ]; }
      ''
        mkdir -p $out work
        cp ${repart}/${config.image.repart.imageFile} $out/clawdinator-nixos.raw
        chmod u+w $out/clawdinator-nixos.raw
        grub-mkimage -O i386-pc -p '(hd0,gpt2)/boot/grub' -o work/core.img \
          biosdisk part_gpt ext2 normal linux search search_label configfile echo test
        cp ${pkgs.grub2}/lib/grub/i386-pc/boot.img work/
        echo "(hd0) $out/clawdinator-nixos.raw" > work/device.map
        grub-bios-setup --skip-fs-probe --directory=work --device-map=work/device.map \
          "$out/clawdinator-nixos.raw"
      '';
}
