# services.clawdinator: one CLAWDINATOR host. The trust boundary (DESIGN.md) is the point:
#
#   clawdinator-ops  the control plane (ops bot gateway, job worker). Owns the fleet's secrets
#                    under /run/clawdinator-ops (dir 0700, files 0400) and is, with root, the
#                    only user that can reach the instance metadata service (and so the
#                    instance role's credentials). Each of its units sees only the secret
#                    files it uses: the others are hidden from it (InaccessiblePaths).
#   clawdinator      the AI coding agent. Runs code from the internet; reads and writes /memory
#                    through the memory-read/-write/-edit tools; asks for fleet actions with
#                    `clawdinator request spawn|replace|retire <peer>`. Cannot read the ops secrets,
#                    the ops state dir, or IMDS.
#
# The units themselves (commands, users, environments, secrets, order) are not written here:
# they come from ./units.json, which the host contract test (test/nix/host-contract.test.ts)
# runs as written. This file adds only what Nix knows: store paths, the operator's settings,
# hardening, users, the mount and the firewall rule.
#
# Boot: user data writes /var/lib/clawdinator/instance.env and starts clawdinator-bootstrap
# (also started at boot), which installs this host's bootstrap bundle, fetches its secrets,
# writes the EFS tunnel's config and hands the switch to its configuration to a unit of its own.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.clawdinator;
  inherit (lib)
    mkOption
    mkEnableOption
    mkIf
    types
    ;

  contract = builtins.fromJSON (builtins.readFile ./units.json);
  inherit (contract) ids paths;
  userOf = u: if u == "root" then "root" else ids.${u}.user;
  groupOf = g: if g == "root" then "root" else ids.${g}.group;
  clawdinator = lib.getExe cfg.package;

  # OpenTofu with the AWS provider built by nixpkgs: nothing is downloaded at deploy time. The
  # stacks are synthesized by @cdktf/provider-aws 21, which wants the `~> 6.0` provider: the
  # assertion below holds nixpkgs' provider to that. (A registry lock file would not match
  # providers built from source: the pin is this expression and the flake's lock.)
  # (nixpkgs names providers owner_repo since late 2025; nixos-25.05 still calls it `aws`.)
  awsProviderOf = p: p.hashicorp_aws or p.aws;
  awsProvider = awsProviderOf pkgs.opentofu.plugins;
  tofu = pkgs.opentofu.withPlugins (p: [ (awsProviderOf p) ]);
  # The worker's runner gives terraform this as TF_CLI_CONFIG_FILE (and a HOME of its own, so no
  # user's .terraformrc counts): providers only from the bundled tree, never from a registry
  # (no `direct` block), no checkpoint calls.
  terraformRc = pkgs.writeText "clawdinator-terraform.rc" ''
    disable_checkpoint = true
    provider_installation {
      filesystem_mirror {
        path    = "${tofu}/libexec/terraform-providers"
        include = ["registry.opentofu.org/*/*", "registry.terraform.io/*/*"]
      }
    }
  '';

  # What the units' moduleEnvironment names stand for.
  moduleEnv = lib.filterAttrs (_: v: v != null) {
    CLAWDINATOR_HOST_NAME = cfg.instanceName;
    CLAWDINATOR_REDIS_URL = cfg.redisUrl;
    CLAWDINATOR_TERRAFORM_BIN = lib.getExe' tofu "tofu";
    CLAWDINATOR_TERRAFORM_CONFIG = "${terraformRc}";
    CLAWDINATOR_EFS_CA_FILE = "${pkgs.cacert}/etc/ssl/certs/ca-bundle.crt";
    # After a (re)initialization only: the bootstrap replaces {flake} (the bundle's pinned
    # revision of this project, or its root-owned repo seeds) and {host}. [] when switch = false.
    # A unit of its own (systemd-run --no-block), never inline: switch-to-configuration would
    # wait for the gateway and worker, and they for the bootstrap.
    CLAWDINATOR_BOOTSTRAP_SWITCH = builtins.toJSON (
      lib.optionals cfg.switch [
        "systemd-run"
        "--no-block"
        "--collect"
        "--unit=clawdinator-switch"
        # The unit's PATH (nix, git for the flake), not systemd's bare default.
        "--setenv=PATH"
        "nixos-rebuild"
        "switch"
        "--flake"
        "{flake}#{host}"
      ]
    );
  };

  # Settings: env names to values; lists and attrsets go as JSON (lib/config.ts parses them).
  toEnv = v: if builtins.isString v then v else builtins.toJSON v;
  settingsEnv = lib.mapAttrs (_: toEnv) cfg.settings;

  programs = {
    clawdinator = clawdinator;
    stunnel = lib.getExe' pkgs.stunnel "stunnel";
  };

  hardening = {
    UMask = "0007";
    NoNewPrivileges = true;
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateDevices = true;
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    RestrictSUIDSGID = true;
    RestrictNamespaces = true;
    RestrictRealtime = true;
    LockPersonality = true;
    CapabilityBoundingSet = "";
    RestrictAddressFamilies = [
      "AF_INET"
      "AF_INET6"
      "AF_UNIX"
    ];
    SystemCallArchitectures = "native";
  };

  # Only named hosts run the fleet's units; the image every AMI is built from runs the bootstrap.
  named = cfg.instanceName != null;

  # What Nix adds to each unit of the contract.
  extra = {
    clawdinator-bootstrap = {
      wantedBy = [ "multi-user.target" ];
      path = [
        pkgs.util-linux
        pkgs.nix
        pkgs.nixos-rebuild
        pkgs.git
        pkgs.gnutar
        pkgs.zstd
        config.systemd.package
      ];
      serviceConfig.TimeoutStartSec = "30min";
    };
    clawdinator-efs-tunnel = {
      wantedBy = lib.optional named "multi-user.target";
      serviceConfig = {
        DynamicUser = true;
        Restart = "always";
        RestartSec = 5;
      } // removeAttrs hardening [ "UMask" ];
    };
    clawdinator-memory-init = {
      wantedBy = lib.optional named "multi-user.target";
      serviceConfig = {
        ReadWritePaths = [ paths.memory ];
        # The mounted file system's root as the layout needs it (root:memory group, setgid).
        ExecStartPre = "+${pkgs.coreutils}/bin/install -d -m 2770 -o root -g ${ids.memory.group} ${paths.memory}";
      };
    };
    clawdinator-seed-repos = {
      wantedBy = lib.optional named "multi-user.target";
      path = [
        pkgs.git
        pkgs.gnutar
        pkgs.zstd
      ];
      serviceConfig = {
        ReadWritePaths = [ paths.agentHome ];
        # Its own home: ProtectHome would hide it.
        ProtectHome = false;
        TimeoutStartSec = "30min";
      };
    };
    # The gateway serves the agent's request socket.
    clawdinator-gateway = opsExtra // {
      serviceConfig = opsExtra.serviceConfig // {
        ReadWritePaths = opsExtra.serviceConfig.ReadWritePaths ++ [ (dirOf paths.requestSocket) ];
      };
    };
    # The worker writes the agent's GitHub token files and runs terraform.
    clawdinator-worker = opsExtra // {
      path = [ pkgs.util-linux tofu ] ++ cfg.extraOpsPackages;
      serviceConfig = opsExtra.serviceConfig // {
        ReadWritePaths = opsExtra.serviceConfig.ReadWritePaths ++ [ paths.githubTokens ];
      };
    };
  };
  opsExtra = {
    wantedBy = lib.optional named "multi-user.target";
    path = [ pkgs.util-linux ] ++ cfg.extraOpsPackages;
    serviceConfig = {
      ReadWritePaths = [
        paths.memory
        paths.opsState
      ];
      StateDirectory = lib.removePrefix "/var/lib/" paths.opsState;
      StateDirectoryMode = "0700";
    };
  };

  mkUnit =
    name: u:
    let
      x = extra.${name} or { };
      isOps = u.user != "root" && u.user != "dynamic";
      hidden = lib.filter (f: !(lib.elem f u.secrets)) (lib.attrNames contract.opsSecrets);
    in
    {
      inherit (u) description after wants;
      wantedBy = x.wantedBy or [ ];
      path = x.path or [ ];
      environment =
        u.environment
        // lib.optionalAttrs u.settings settingsEnv
        # CLAWDINATOR_HOST_NAME is absent on the image (no name yet), whose fleet units never start.
        // lib.filterAttrs (_: v: v != null) (lib.genAttrs u.moduleEnvironment (n: moduleEnv.${n} or null));
      unitConfig =
        lib.optionalAttrs (u.wantsMountsFor != [ ]) { WantsMountsFor = u.wantsMountsFor; }
        // lib.optionalAttrs (u ? conditionPathExists) { ConditionPathExists = u.conditionPathExists; };
      serviceConfig =
        {
          Type = u.type;
          ExecStart = lib.escapeShellArgs ([ programs.${lib.head u.command} ] ++ lib.tail u.command);
        }
        // (
          if u.type == "oneshot" then
            { RemainAfterExit = true; }
          else
            {
              Restart = "always";
              RestartSec = 5;
            }
        )
        // lib.optionalAttrs isOps (
          hardening
          // {
            User = userOf u.user;
            Group = groupOf u.group;
            SupplementaryGroups = map groupOf (u.supplementaryGroups or [ ]);
            # The ops secrets this unit does not use are not there for it.
            InaccessiblePaths = map (f: "-${paths.opsSecrets}/${f}") hidden;
          }
        )
        // (x.serviceConfig or { });
    };

  # The host scripts SSM runs as root through our document (units.json hostScripts): the
  # deploy's switch, doctor's checklist, the journals. writeShellApplication runs shellcheck
  # on each at build and puts only its inputs on its PATH.
  hostScriptInputs = {
    clawdinator = cfg.package;
    inherit (pkgs)
      jq
      coreutils
      gnused
      gnugrep
      gawk
      findutils
      util-linux
      nix
      nixos-rebuild
      git
      ;
    systemd = config.systemd.package;
  };
  hostScripts = lib.mapAttrsToList (
    name: script:
    pkgs.writeShellApplication {
      inherit name;
      runtimeInputs = map (input: hostScriptInputs.${input}) script.runtimeInputs;
      text = builtins.readFile (./. + "/${script.source}");
    }
  ) (removeAttrs contract.hostScripts [ "$comment" ]);
  # The project's flake (github:<owner>/<repo>) the deploy switches this host to, at the sha it
  # is asked for: the host's own setting, so whoever may send it commands can choose a commit
  # of the project, never another repository.
  hostFlake = cfg.settings.CLAWDINATOR_HOST_FLAKE or null;

  # The agents' memory tools, as the original's (same names, same flock(2) locks, exit 1 on a
  # lock timeout). memory-write takes the content from stdin, or from its second argument.
  memoryTool =
    name: body:
    pkgs.writeShellScriptBin name ''
      set -euo pipefail
      export CLAWDINATOR_MEMORY_DIR=${paths.memory}
      umask 0007
      ${body}
    '';
  memoryTools = [
    # The original's name for the agent's early token refresh: a signed request to this host's
    # ops gateway (the worker mints it; the agent never holds the App key).
    (pkgs.writeShellScriptBin "clawdinator-gh-refresh" ''
      set -euo pipefail
      [ $# -eq 0 ] || { echo "usage: clawdinator-gh-refresh" >&2; exit 2; }
      exec ${clawdinator} request gh-refresh
    '')
    (memoryTool "memory-read" ''
      [ $# -eq 1 ] || { echo "usage: memory-read FILE" >&2; exit 2; }
      exec ${clawdinator} memory read -- "$1"
    '')
    (memoryTool "memory-write" ''
      if [ $# -lt 1 ] || [ $# -gt 2 ]; then echo "usage: memory-write FILE [CONTENT]  (or content on stdin)" >&2; exit 2; fi
      if [ $# -eq 2 ]; then
        printf '%s\n' "$2" | ${clawdinator} memory write -- "$1"
      else
        exec ${clawdinator} memory write -- "$1"
      fi
    '')
    (memoryTool "memory-edit" ''
      [ $# -ge 1 ] || { echo "usage: memory-edit FILE [COMMAND...]  (default: \$EDITOR on a copy)" >&2; exit 2; }
      file=$1; shift
      if [ $# -gt 0 ]; then
        # COMMAND runs under the exclusive lock and must write in place (cat > FILE), not rename.
        exec ${clawdinator} memory edit "$file" -- "$@"
      fi
      # Interactive: edit a copy (editors save by rename), write it back in place only if
      # nobody changed the file meanwhile.
      tmp=$(mktemp); trap 'rm -f "$tmp"' EXIT
      ${clawdinator} memory read -- "$file" > "$tmp"
      sum=$(sha256sum "$tmp" | cut -d' ' -f1)
      # $EDITOR may carry arguments (EDITOR="code --wait").
      # shellcheck disable=SC2086
      ''${EDITOR:-vi} "$tmp"
      ${clawdinator} memory write --if-sha256 "$sum" -- "$file" < "$tmp"
    '')
    (memoryTool "memory-append" ''
      [ $# -eq 1 ] || { echo "usage: memory-append FILE  (content on stdin)" >&2; exit 2; }
      exec ${clawdinator} memory append -- "$1"
    '')
  ];
in
{
  # The agent runtime, its model proxy's firewall rule, toolchain and host basics.
  imports = [ ./agent.nix ];

  options.services.clawdinator = {
    enable = mkEnableOption "a CLAWDINATOR host (agent user, shared memory, ops bot gateway and job worker)";

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix { src = ../.; };
      defaultText = lib.literalExpression "pkgs.callPackage ./package.nix { src = ../.; }";
      description = "The clawdinator CLI (built from this repository).";
    };

    instanceName = mkOption {
      type = types.nullOr (types.strMatching "clawdinator-[a-z0-9]+(-[a-z0-9]+)*");
      default = null;
      example = "clawdinator-3";
      description = ''
        This host's fleet name (CLAWDINATOR_HOST_NAME). null for the image every AMI is built
        from: it runs only the bootstrap, which switches to the named host's configuration.
      '';
    };

    hostName = mkOption {
      type = types.nullOr types.str;
      default = cfg.instanceName;
      defaultText = lib.literalExpression "config.services.clawdinator.instanceName";
      description = "networking.hostName (the registry entry's host).";
    };

    redisUrl = mkOption {
      type = types.strMatching "rediss?://[^@[:space:]]*";
      example = "rediss://master.clawdinator.abc123.euc1.cache.amazonaws.com:6379";
      description = "The fleet's Redis, without a password (that is ${paths.opsSecrets}/redis-password).";
    };

    settings = mkOption {
      type = types.attrsOf (
        types.oneOf [
          types.str
          types.int
          types.bool
          (types.listOf types.str)
          (types.attrsOf types.anything)
        ]
      );
      default = { };
      example = {
        CLAWDINATOR_DISCORD_APP_ID = "123456789012345678";
        CLAWDINATOR_DISCORD_GUILD_IDS = [ "123456789012345678" ];
      };
      description = ''
        Control-plane settings as environment variables (CLAWDINATOR_*, see lib/config.ts) for
        the gateway and the worker; lists and attrsets are passed as JSON. Never secrets: those
        are files (*_FILE), and which key each unit signs with is fixed by nix/units.json.
      '';
    };

    switch = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Whether the bootstrap hands `nixos-rebuild switch --flake <flake>#<host>` to a unit of its
        own after it installed a bundle. The flake is one root owns: the bundle's pinned revision
        of this project (config.json's `flake`), else the root-owned copy of the repo seeds.
      '';
    };

    locked = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Whether the flake this host was built from has a committed flake.lock (flake.nix sets
        it). Written to the build info; /status flags a host built without one.
      '';
    };

    extraOpsPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
      description = "More tools on the gateway's and worker's PATH.";
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = lib.all (n: lib.hasPrefix "CLAWDINATOR_" n) (lib.attrNames cfg.settings);
        message = "services.clawdinator.settings: every name must start with CLAWDINATOR_";
      }
      {
        assertion = !(lib.any (n: builtins.match ".*(PASSWORD|TOKEN|SECRET|KEY|KEY_ID|_FILE)$" n != null) (lib.attrNames cfg.settings));
        message = "services.clawdinator.settings: secrets go in files under ${paths.opsSecrets}, and each unit's key is fixed by nix/units.json";
      }
      {
        assertion = lib.all (u: lib.all (n: moduleEnv ? ${n} || n == "CLAWDINATOR_HOST_NAME") u.moduleEnvironment) (lib.attrValues contract.units);
        message = "nix/units.json names a moduleEnvironment this module does not provide";
      }
      {
        assertion = lib.versionAtLeast awsProvider.version "6.0" && lib.versionOlder awsProvider.version "7.0";
        message = "the bundled AWS provider must be ~> 6.0 (@cdktf/provider-aws 21), not ${awsProvider.version}";
      }
    ];

    networking.hostName = mkIf (cfg.hostName != null) cfg.hostName;

    # Fixed ids: /memory is a shared NFS file system, which compares numbers, not names, so
    # they must be the same on every host; the metadata-service rule names the ops uid.
    users.groups.${ids.ops.group}.gid = ids.ops.gid;
    users.groups.${ids.agent.group}.gid = ids.agent.gid;
    users.groups.${ids.memory.group}.gid = ids.memory.gid;
    users.users.${ids.ops.user} = {
      isSystemUser = true;
      uid = ids.ops.uid;
      group = ids.ops.group;
      extraGroups = [ ids.memory.group ];
      home = paths.opsState;
      description = "CLAWDINATOR control plane";
    };
    # The agent: not in wheel, not in systemd-journal (the ops services' logs stay out of reach).
    users.users.${ids.agent.user} = {
      isNormalUser = true;
      uid = ids.agent.uid;
      group = ids.agent.group;
      extraGroups = [ ids.memory.group ];
      home = paths.agentHome;
      createHome = true;
      homeMode = "700";
      description = "CLAWDINATOR agent";
    };

    environment.systemPackages = [
      cfg.package
      pkgs.util-linux
    ] ++ memoryTools ++ hostScripts;

    # The agent's GitHub identity: gh reads the token files the worker keeps fresh (hosts.yml;
    # no GH_TOKEN in any environment, which gh would prefer and which would go stale), git the
    # App's bot name and gh as its credential helper.
    environment.variables.GH_CONFIG_DIR = paths.githubTokens;
    programs.git = {
      enable = true;
      config.include.path = "${paths.githubTokens}/gitconfig";
    };

    # Workspace templates for the agent (seeded into its workspace by the bootstrap).
    environment.etc."clawdinator/workspace".source = "${cfg.package}/lib/clawdinator/workspace";
    # What the worker's heartbeat reports, re-read at every beat (a switch changes it).
    environment.etc."clawdinator/build-info.json".text = builtins.toJSON {
      revision = if config.system.configurationRevision == null then "unknown" else config.system.configurationRevision;
      inherit (cfg) locked;
      version = cfg.package.version;
    };

    # What the host script reads besides instance.env: the flake deploys switch to.
    environment.etc."clawdinator/host.env" = lib.mkIf (hostFlake != null) {
      text = "CLAWDINATOR_HOST_FLAKE=${lib.removeSuffix "/" (builtins.head (builtins.match "(github:[^/]+/[^/]+).*" hostFlake))}\n";
    };

    systemd.tmpfiles.rules = map (d: "d ${d.path} ${d.mode} ${userOf d.user} ${groupOf d.group} -") contract.directories;

    # Only root (the bootstrap) and clawdinator-ops reach the metadata service (IPv4 and the
    # Nitro IPv6 endpoint). IMDSv2 with hop limit 1 (infra) keeps containers out as well.
    networking.nftables.enable = true;
    networking.nftables.tables.clawdinator-imds = {
      family = "inet";
      content = ''
        chain output {
          type filter hook output priority 0; policy accept;
          ip daddr 169.254.169.254 meta skuid != { 0, ${toString ids.ops.uid} } counter drop
          ip6 daddr fd00:ec2::254 meta skuid != { 0, ${toString ids.ops.uid} } counter drop
        }
      '';
    };

    # The hive mind: the base stack's EFS over TLS (see units.json memoryMount). A host whose
    # bundle names no file system has no tunnel config: the mount is skipped and /memory stays
    # a local directory, which its heartbeat reports (memoryShared: false, shown by /status).
    boot.supportedFilesystems = [ "nfs" ];
    systemd.mounts = lib.optional named {
      inherit (contract.memoryMount) what where type after requires;
      options = lib.concatStringsSep "," contract.memoryMount.options;
      wantedBy = [ "remote-fs.target" ];
      unitConfig.ConditionPathExists = contract.memoryMount.conditionPathExists;
    };

    systemd.services = lib.mapAttrs mkUnit contract.units;
  };
}
