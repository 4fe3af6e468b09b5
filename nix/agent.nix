# services.clawdinator.agent: the CLAWDINATOR itself — the AI coding agent runtime (openclaw,
# from the nix-openclaw flake input: its services.openclaw-gateway module runs it), on every
# named host, as the agent's user:
#
#   clawdinator-agent        openclaw gateway (./agent.json), Restart=always, after the
#                            bootstrap, the memory mount and the model proxy; before each start
#                            `clawdinator seed-workspace` refreshes its workspace and files.
#                            Config: /etc/openclaw/openclaw.json, rendered at build time by
#                            `clawdinator agent-config <name>` from the flake's registry
#                            (infra/fleet.json) and the operator's settings: no .nix per host.
#   clawdinator-model-proxy  (units.json, run by the ops user) the runtime's only way to the
#                            model providers; its loopback port is closed to every uid but the
#                            agent's and root's by the nftables rule below.
#
# Also: the toolchain (./agent-tools.nix) with /etc/clawdinator/tools.md rendered from it, the
# build info extended with the runtime's and nixpkgs' pinned revisions, and the host basics
# (./host-basics.nix).
{
  config,
  lib,
  pkgs,
  options,
  ...
}:
let
  cfg = config.services.clawdinator;
  acfg = cfg.agent;
  contract = builtins.fromJSON (builtins.readFile ./units.json);
  runtime = (builtins.fromJSON (builtins.readFile ./agent.json)).runtime;
  inherit (contract) ids paths;
  named = cfg.instanceName != null;
  clawdinator = lib.getExe cfg.package;
  hasOpenclaw = options.services ? openclaw-gateway;

  # The operator's settings, as the ops units get them (lists and attrsets as JSON).
  toEnv = v: if builtins.isString v then v else builtins.toJSON v;
  settingsEnv = lib.mapAttrs (_: toEnv) cfg.settings;
  proxyPort = toString (cfg.settings.CLAWDINATOR_MODEL_PROXY_PORT or 18780);
  proxyUrl = "http://127.0.0.1:${proxyPort}";

  memoryToolDocs = [
    {
      name = "memory-read / memory-write / memory-append / memory-edit";
      description = "The hive mind at /memory, under the same flock locks as every host (never > or >>).";
      package = null;
    }
    {
      name = "clawdinator";
      description = "request spawn|replace|retire <peer> (the fleet, through your host's ops gateway), request gh-refresh, version, memory list, agent-config <you>.";
      package = null;
    }
    {
      name = "clawdinator-gh-refresh";
      description = "A new GitHub token for gh and git now (mid-batch, before a long push); the control plane refreshes it every 45 minutes anyway. At most one new token a minute.";
      package = null;
    }
    {
      name = "openclaw";
      description = "Your runtime (the gateway runs as the clawdinator-agent unit).";
      package = acfg.runtimePackage;
    }
  ];
  tools = import ./agent-tools.nix {
    inherit pkgs;
    extra = memoryToolDocs;
  };

  # What the runtime's unit gets besides agent.json's fixed environment.
  moduleEnv = {
    CLAWDINATOR_HOST_NAME = cfg.instanceName;
    CLAWDINATOR_JOB_KEY_ID = "agent:${cfg.instanceName}";
    # Tools the agent starts (pi, SDK-based CLIs) reach the models through the proxy too.
    ANTHROPIC_BASE_URL = "${proxyUrl}/anthropic";
    OPENAI_BASE_URL = "${proxyUrl}/openai/v1";
  };
  runtimeEnv = runtime.environment // lib.genAttrs runtime.moduleEnvironment (n: moduleEnv.${n});

  # The member's merged configuration, made by the same code as `clawdinator agent-config`
  # (lib/agent-config.ts), at build time, from the registry this flake was built with. A
  # registry change reaches the host with the next deploy of that commit.
  agentConfigFile =
    pkgs.runCommand "openclaw-${cfg.instanceName}.json"
      (
        settingsEnv
        // {
          CLAWDINATOR_FLEET_REGISTRY = "${acfg.registryFile}";
          CLAWDINATOR_FLEET_REGISTRY_BACKEND = "file";
          CLAWDINATOR_WORKSPACE_DIR = runtime.environment.CLAWDINATOR_WORKSPACE_DIR;
          CLAWDINATOR_AGENT_SECRETS_DIR = runtime.environment.CLAWDINATOR_AGENT_SECRETS_DIR;
          CLAWDINATOR_AGENT_STATE_DIR = runtime.stateDir;
        }
      )
      ''
        ${clawdinator} agent-config ${lib.escapeShellArg cfg.instanceName} > $out
      '';

  runtimeRev = if acfg.runtimePackage == null then null else acfg.runtimePackage.passthru.pinnedRev or null;
  runtimeVersion = if acfg.runtimePackage == null then null else acfg.runtimePackage.version or null;
  buildInfo =
    {
      # What nix/module.nix writes (the worker's heartbeat reads these three) …
      revision = if config.system.configurationRevision == null then "unknown" else config.system.configurationRevision;
      inherit (cfg) locked;
      version = cfg.package.version;
      # … and what this module adds: the runtime's and nixpkgs' pinned revisions (lock age from
      # lastModified), for `clawdinator version` and /status name:.
      nixpkgs = acfg.pins.nixpkgs;
    }
    // lib.optionalAttrs (acfg.runtimePackage != null) {
      runtime = {
        name = "openclaw";
        version = runtimeVersion;
        rev = runtimeRev;
        nixOpenclaw = acfg.pins.nixOpenclaw;
      };
    };

  pin = lib.types.submodule {
    options = {
      rev = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
      };
      lastModified = lib.mkOption {
        type = lib.types.nullOr lib.types.int;
        default = null;
      };
    };
  };
in
{
  imports = [ ./host-basics.nix ];

  options.services.clawdinator.agent = {
    enable = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = "Run the agent runtime (and its model proxy) on named hosts.";
    };
    runtimePackage = lib.mkOption {
      type = lib.types.nullOr lib.types.package;
      default = null;
      description = "openclaw's gateway package (flake.nix: nix-openclaw's openclaw-gateway).";
    };
    registryFile = lib.mkOption {
      type = lib.types.path;
      default = ../infra/fleet.json;
      defaultText = lib.literalExpression "../infra/fleet.json";
      description = "The fleet registry the member's runtime configuration is rendered from.";
    };
    pins = {
      nixOpenclaw = lib.mkOption {
        type = pin;
        default = { };
        description = "nix-openclaw's locked revision and lastModified (flake.nix sets them from the input).";
      };
      nixpkgs = lib.mkOption {
        type = pin;
        default = { };
        description = "nixpkgs' locked revision and lastModified.";
      };
    };
  };

  config = lib.mkIf (cfg.enable && acfg.enable) (
    lib.mkMerge [
      {
        assertions = [
          {
            assertion = !named || (hasOpenclaw && acfg.runtimePackage != null);
            message = "services.clawdinator.agent: import nix-openclaw's nixosModules.openclaw-gateway and set agent.runtimePackage (flake.nix does both)";
          }
        ];

        environment.systemPackages = tools.packages;
        environment.etc."clawdinator/tools.md".text = tools.markdown;
        # nix/module.nix writes the same three fields; this adds the pins. (One file, one writer:
        # a second definition of `text` would be concatenated, not merged.)
        environment.etc."clawdinator/build-info.json".text = lib.mkForce (builtins.toJSON buildInfo);

        # Only the agent (and root) may connect to the model proxy: it spends the fleet's keys.
        networking.nftables.tables.clawdinator-model-proxy = {
          family = "inet";
          content = ''
            chain output {
              type filter hook output priority 0; policy accept;
              ip daddr 127.0.0.0/8 tcp dport ${proxyPort} meta skuid != { 0, ${toString ids.agent.uid} } counter reject with tcp reset
              ip6 daddr ::1 tcp dport ${proxyPort} meta skuid != { 0, ${toString ids.agent.uid} } counter reject with tcp reset
            }
          '';
        };

        # units.json describes it; the module starts it on named hosts, before the runtime.
        systemd.services.clawdinator-model-proxy = {
          wantedBy = lib.optional named "multi-user.target";
          before = [ "${runtime.unit}.service" ];
        };
      }

      (lib.optionalAttrs hasOpenclaw {
        services.openclaw-gateway = lib.mkIf named {
          enable = true;
          unitName = runtime.unit;
          package = acfg.runtimePackage;
          port = lib.toInt (lib.last runtime.command);
          user = ids.agent.user;
          group = ids.agent.group;
          createUser = false;
          stateDir = runtime.stateDir;
          configPath = runtime.configPath;
          configFile = agentConfigFile;
          # Unused (the unit logs to the journal, below), but the module makes its directory
          # with tmpfiles as root: outside the agent's state dir, so root never works inside it.
          logPath = "/var/log/${runtime.unit}/gateway.log";
          environment = runtimeEnv;
          environmentFiles = runtime.environmentFiles;
          execStartPre = [ (lib.escapeShellArgs ([ clawdinator ] ++ lib.tail runtime.execStartPre)) ];
          servicePath = tools.packages ++ [ cfg.package ];
          restart = "always";
          restartSec = 5;
        };
      })

      (lib.mkIf named {
        systemd.services.${runtime.unit} = {
          inherit (runtime) after wants;
          description = lib.mkForce runtime.description;
          unitConfig = {
            WantsMountsFor = runtime.wantsMountsFor;
            ConditionPathExists = runtime.conditionPathExists;
          };
          serviceConfig = {
            SupplementaryGroups = map (g: ids.${g}.group) runtime.supplementaryGroups;
            # systemd opens append: log files as root, and the agent owns that directory: a link
            # it planted there would be followed. The journal instead; openclaw also writes its
            # own log (logging.file) as the agent.
            StandardOutput = lib.mkForce "journal";
            StandardError = lib.mkForce "journal";
            # Memory files stay group-writable for the other hosts' agents and the control plane.
            UMask = "0007";
            NoNewPrivileges = true;
            ProtectSystem = "strict";
            ReadWritePaths = [
              paths.agentHome
              runtime.stateDir
              paths.memory
            ];
            PrivateTmp = true;
            ProtectKernelTunables = true;
            ProtectKernelModules = true;
            ProtectKernelLogs = true;
            ProtectControlGroups = true;
            RestrictSUIDSGID = true;
            LockPersonality = true;
            CapabilityBoundingSet = "";
          };
        };
      })
    ]
  );
}
