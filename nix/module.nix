# services.clawdinator: one CLAWDINATOR host. The trust boundary (DESIGN.md) is the point:
#
#   clawdinator-ops  the control plane (ops bot gateway, job worker). Owns the fleet's secrets
#                    under /run/clawdinator-ops (dir 0700, files 0400) and is, with root, the
#                    only user that can reach the instance metadata service (and so the
#                    instance role's credentials).
#   clawdinator      the AI coding agent. Runs code from the internet; reads and writes /memory
#                    through the memory-read/-write/-edit tools; asks for fleet actions with
#                    `clawdinator request spawn|replace|retire <peer>`. Cannot read the ops secrets,
#                    the ops state dir, or IMDS.
#
# Boot: user data writes /var/lib/clawdinator/instance.env and starts clawdinator-bootstrap
# (also started at boot), which installs this host's bootstrap bundle, fetches its secrets and
# hands the switch to its configuration to a unit of its own.
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

  instanceEnv = "/var/lib/clawdinator/instance.env";
  opsSecrets = "/run/clawdinator-ops";
  agentSecrets = "/run/clawdinator";
  agentHome = "/var/lib/clawd";
  opsState = "/var/lib/clawdinator-ops";
  memoryDir = "/memory";
  clawdinator = lib.getExe cfg.package;

  # Settings: env names to values; lists and attrsets go as JSON (lib/config.ts parses them).
  toEnv = v: if builtins.isString v then v else builtins.toJSON v;
  settingsEnv = lib.mapAttrs (_: toEnv) cfg.settings;

  # What both control-plane services see. Secrets are files, never values (*_FILE).
  opsEnv =
    settingsEnv
    // {
      CLAWDINATOR_MEMORY_DIR = memoryDir;
      CLAWDINATOR_REDIS_URL = cfg.redisUrl;
      CLAWDINATOR_REDIS_PASSWORD_FILE = "${opsSecrets}/redis-password";
      CLAWDINATOR_JOB_SIGNING_KEY_FILE = "${opsSecrets}/job-signing-key.pem";
      CLAWDINATOR_DISCORD_TOKEN_FILE = "${opsSecrets}/discord-token";
      CLAWDINATOR_GITHUB_APP_KEY_FILE = "${opsSecrets}/github-app.pem";
      HOME = opsState;
    }
    // lib.optionalAttrs (cfg.instanceName != null) { CLAWDINATOR_HOST_NAME = cfg.instanceName; };

  hardening = {
    User = "clawdinator-ops";
    Group = "clawdinator-ops";
    SupplementaryGroups = [ "clawdinator-memory" ];
    UMask = "0007";
    NoNewPrivileges = true;
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateDevices = true;
    ReadWritePaths = [
      memoryDir
      opsState
    ];
    StateDirectory = "clawdinator-ops";
    StateDirectoryMode = "0700";
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

  opsService = description: subcommand: {
    inherit description;
    wantedBy = lib.optional (cfg.instanceName != null) "multi-user.target";
    after = [
      "network-online.target"
      "clawdinator-bootstrap.service"
      "clawdinator-memory-init.service"
    ];
    wants = [ "network-online.target" ];
    unitConfig.RequiresMountsFor = memoryDir;
    # Starts once the bootstrap has put the secrets in place.
    unitConfig.ConditionPathExists = "${opsSecrets}/redis-password";
    environment = opsEnv;
    path = [ pkgs.util-linux ] ++ cfg.extraOpsPackages;
    serviceConfig = hardening // {
      ExecStart = "${clawdinator} ${subcommand}";
      Restart = "always";
      RestartSec = 5;
    };
  };

  # The agents' memory tools, as the original's (same names, same flock(2) locks, exit 1 on a
  # lock timeout). memory-write takes the content from stdin, or from its second argument.
  memoryTool =
    name: body:
    pkgs.writeShellScriptBin name ''
      set -euo pipefail
      export CLAWDINATOR_MEMORY_DIR=${memoryDir}
      umask 0007
      ${body}
    '';
  memoryTools = [
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
  options.services.clawdinator = {
    enable = mkEnableOption "a CLAWDINATOR host (agent user, shared memory, ops bot gateway and job worker)";

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix { src = ../.; };
      defaultText = lib.literalExpression "pkgs.callPackage ./package.nix { src = ../.; }";
      description = "The clawdinator CLI (built from this repository).";
    };

    instanceName = mkOption {
      type = types.nullOr (types.strMatching "clawdinator-[a-z0-9-]{1,28}");
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
      description = "The fleet's Redis, without a password (that is ${opsSecrets}/redis-password).";
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
        CLAWDINATOR_JOB_KEY_ID = "gateway";
      };
      description = ''
        Control-plane settings as environment variables (CLAWDINATOR_*, see lib/config.ts);
        lists and attrsets are passed as JSON. Never secrets: those are files (*_FILE).
      '';
    };

    bootstrapFlake = mkOption {
      type = types.nullOr types.str;
      default = "${agentHome}/repo-seeds/clawdinators";
      description = ''
        Flake the bootstrap switches to (`nixos-rebuild switch --flake <this>#<host>`, in a unit
        of its own) after it installed a bundle; by default this repository from the repo
        seeds. null: no switch.
      '';
    };

    opsUid = mkOption {
      type = types.int;
      default = 2790;
      description = "uid of clawdinator-ops, fixed because the metadata-service rule names it by number.";
    };

    extraOpsPackages = mkOption {
      type = types.listOf types.package;
      default = [ pkgs.opentofu ];
      defaultText = lib.literalExpression "[ pkgs.opentofu ]";
      description = "Tools on the worker's PATH (terraform or tofu for the infra jobs).";
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = lib.all (n: lib.hasPrefix "CLAWDINATOR_" n) (lib.attrNames cfg.settings);
        message = "services.clawdinator.settings: every name must start with CLAWDINATOR_";
      }
      {
        assertion = !(lib.any (n: builtins.match ".*(PASSWORD|TOKEN|SECRET|KEY)$" n != null) (lib.attrNames cfg.settings));
        message = "services.clawdinator.settings: secrets go in files under ${opsSecrets}, not in settings";
      }
    ];

    networking.hostName = mkIf (cfg.hostName != null) cfg.hostName;

    users.groups.clawdinator-ops = { };
    users.groups.clawdinator = { };
    users.groups.clawdinator-memory = { };
    users.users.clawdinator-ops = {
      isSystemUser = true;
      uid = cfg.opsUid;
      group = "clawdinator-ops";
      home = opsState;
      description = "CLAWDINATOR control plane";
    };
    # The agent: not in wheel, not in systemd-journal (the ops services' logs stay out of reach).
    users.users.clawdinator = {
      isNormalUser = true;
      group = "clawdinator";
      extraGroups = [ "clawdinator-memory" ];
      home = agentHome;
      createHome = true;
      description = "CLAWDINATOR agent";
    };

    environment.systemPackages = [
      cfg.package
      pkgs.util-linux
    ] ++ memoryTools;

    # Workspace templates for the agent (seeded into its workspace by the bootstrap).
    environment.etc."clawdinator/workspace".source = "${cfg.package}/lib/clawdinator/workspace";

    systemd.tmpfiles.rules = [
      "d /var/lib/clawdinator 0755 root root -"
      "d ${opsSecrets} 0700 clawdinator-ops clawdinator-ops -"
      "d ${agentSecrets} 0700 clawdinator clawdinator -"
    ];

    # Only root (the bootstrap) and clawdinator-ops reach the metadata service (IPv4 and the
    # Nitro IPv6 endpoint). IMDSv2 with hop limit 1 (infra) keeps containers out as well.
    networking.nftables.enable = true;
    networking.nftables.tables.clawdinator-imds = {
      family = "inet";
      content = ''
        chain output {
          type filter hook output priority 0; policy accept;
          ip daddr 169.254.169.254 meta skuid != { 0, ${toString cfg.opsUid} } counter drop
          ip6 daddr fd00:ec2::254 meta skuid != { 0, ${toString cfg.opsUid} } counter drop
        }
      '';
    };

    # Root: `clawdinator bootstrap` (cli/bootstrap.ts) reads instance.env (or the user data
    # through IMDSv2 when it is missing, and writes it back), installs this host's bundle from
    # s3://<bucket>/<prefix>/ once per prefix (a sentinel in /var/lib/clawdinator records it;
    # a changed prefix re-initializes): workspace templates into /var/lib/clawd/workspace, repo
    # seeds (tar + zstd) into /var/lib/clawd/repo-seeds, the fleet's secrets into ${opsSecrets}
    # and the agent's own (its Discord token, its request-signing key) into /run/clawdinator,
    # each 0400 in a 0700 dir; secrets are refreshed at every start (/run is empty after a
    # reboot). User data starts it again with --no-block.
    # The gateway and worker are ordered after it, so the bootstrap hands the switch to a
    # unit of its own (systemd-run --no-block nixos-rebuild switch …, CLAWDINATOR_BOOTSTRAP_SWITCH),
    # never runs it inline: switch-to-configuration would wait for them, and they for the bootstrap.
    systemd.services.clawdinator-bootstrap = {
      description = "CLAWDINATOR bootstrap (secrets, repo seeds, workspace, host configuration)";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      environment = {
        CLAWDINATOR_INSTANCE_ENV = instanceEnv;
        CLAWDINATOR_OPS_SECRETS_DIR = opsSecrets;
        CLAWDINATOR_AGENT_SECRETS_DIR = agentSecrets;
        CLAWDINATOR_BOOTSTRAP_STATE_DIR = "/var/lib/clawdinator";
        CLAWDINATOR_WORKSPACE_DIR = "${agentHome}/workspace";
        CLAWDINATOR_REPO_SEEDS_DIR = "${agentHome}/repo-seeds";
        # After a (re)initialization only; {host} is the bundle's host. [] when no flake is set.
        CLAWDINATOR_BOOTSTRAP_SWITCH = builtins.toJSON (
          lib.optionals (cfg.bootstrapFlake != null) [
            "systemd-run"
            "--no-block"
            "--collect"
            "--unit=clawdinator-switch"
            # The unit's PATH (nix, git for the flake), not systemd's bare default.
            "--setenv=PATH"
            "nixos-rebuild"
            "switch"
            "--flake"
            "${cfg.bootstrapFlake}#{host}"
          ]
        );
      };
      path = [
        pkgs.util-linux
        pkgs.nix
        pkgs.nixos-rebuild
        pkgs.git
        pkgs.gnutar
        pkgs.zstd
      ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        TimeoutStartSec = "30min";
        # No EnvironmentFile: the bootstrap reads instance.env itself (and IMDS when it is missing).
        ExecStart = "${clawdinator} bootstrap";
        # Whatever wrote the secrets, leave them as the boundary needs them.
        ExecStartPost = pkgs.writeShellScript "clawdinator-ops-secrets-perms" ''
          set -eu
          chown -R clawdinator-ops:clawdinator-ops ${opsSecrets}
          chmod 0700 ${opsSecrets}
          find ${opsSecrets} -type f -exec chmod 0400 {} +
          install -d -m 0700 -o clawdinator -g clawdinator ${agentSecrets}
          chown -R clawdinator:clawdinator ${agentSecrets}
          find ${agentSecrets} -type f -exec chmod 0400 {} +
          for d in ${agentHome}/workspace ${agentHome}/repo-seeds; do
            if [ -d "$d" ]; then chown -R clawdinator:clawdinator "$d"; fi
          done
        '';
      };
    };

    # The shared memory layout; never overwrites. /memory is group clawdinator-memory, setgid.
    systemd.services.clawdinator-memory-init = {
      description = "CLAWDINATOR shared memory layout";
      wantedBy = [ "multi-user.target" ];
      after = [ "clawdinator-bootstrap.service" ];
      unitConfig.RequiresMountsFor = memoryDir;
      environment.CLAWDINATOR_MEMORY_DIR = memoryDir;
      serviceConfig = removeAttrs hardening [ "StateDirectory" "StateDirectoryMode" ] // {
        ReadWritePaths = [ memoryDir ];
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStartPre = "+${pkgs.coreutils}/bin/install -d -m 2770 -o root -g clawdinator-memory ${memoryDir}";
        ExecStart = "${clawdinator} memory init";
      };
    };

    systemd.services.clawdinator-gateway = opsService "CLAWDINATOR ops bot gateway" "gateway";
    systemd.services.clawdinator-worker = opsService "CLAWDINATOR job worker" "worker";
  };
}
