{
  description = "CLAWDINATOR fleet: the clawdinator control-plane CLI, its NixOS module and host configurations";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  # The agent runtime (openclaw) and its NixOS module (services.openclaw-gateway), pinned to a
  # commit of nix-openclaw so every host of one revision of this repo runs the same runtime.
  # To bump: pick a newer commit of github:openclaw/nix-openclaw (its CI publishes each stable
  # openclaw release as one), replace the rev below, run `nix flake lock --update-input
  # nix-openclaw`, check `nix flake check` and the agent-config golden files
  # (test/fixtures/agent-config/) against the release's config changes, then deploy as usual
  # (canary first). `clawdinator version` on a host shows the pinned revisions and lock ages.
  # nix-openclaw keeps its own nixpkgs (nixos-unstable): the runtime is built and cached
  # upstream with it, so it does not follow this flake's nixpkgs.
  inputs.nix-openclaw.url = "github:openclaw/nix-openclaw/910c1ce89e6a6c7574ab97d3935afbe5310b5db7";

  outputs =
    {
      self,
      nixpkgs,
      nix-openclaw,
    }:
    let
      lib = nixpkgs.lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # The fleet registry (infra/fleet.json, the original's nix/instances.json schema):
      # { "<name>": { "host", "instanceType", "bootstrapPrefix", "discordTokenSecret", ... } }.
      # Every entry becomes nixosConfigurations.<host>, so the bootstrap and deploys run
      # `nixos-rebuild switch --flake <repo>#<host>` with the host from /var/lib/clawdinator/instance.env.
      registryFile = ./infra/fleet.json;

      # Written by the operator once, on a machine with network (README: "Running a real
      # fleet"): flake.lock pins nixpkgs, so two hosts built from one sha run one system; without
      # it, each evaluation resolves nixpkgs anew and the hosts report `locked: false`.
      locked = builtins.pathExists ./flake.lock;
      # The npm registry the package's dependencies are fetched from (nix/npm-lock.nix).
      npmRegistryFile = ./nix/npm-registry.url;
      npmRegistry =
        if builtins.pathExists npmRegistryFile then builtins.head (builtins.match "[[:space:]]*([^[:space:]]+)[[:space:]]*" (builtins.readFile npmRegistryFile)) else null;
      clawdinatorFor = pkgs: pkgs.callPackage ./nix/package.nix { src = self; inherit npmRegistry; };
      registry = if builtins.pathExists registryFile then lib.importJSON registryFile else { };

      mkHost =
        instanceName:
        lib.nixosSystem {
          system = "x86_64-linux";
          modules = [
            { nixpkgs.overlays = [ self.overlays.default ]; }
            (
              { pkgs, ... }:
              {
                services.clawdinator.package = lib.mkDefault pkgs.clawdinator;
                services.clawdinator.locked = locked;
              }
            )
            (import ./nix/hosts/clawdinator.nix { inherit instanceName; })
            # The agent runtime: nix-openclaw's module runs it; nix/agent.nix configures it.
            nix-openclaw.nixosModules.openclaw-gateway
            {
              services.clawdinator.agent = {
                runtimePackage = nix-openclaw.packages.x86_64-linux.openclaw-gateway;
                registryFile = registryFile;
                pins.nixOpenclaw = {
                  rev = nix-openclaw.rev or null;
                  lastModified = nix-openclaw.lastModified or null;
                };
                pins.nixpkgs = {
                  rev = nixpkgs.rev or null;
                  lastModified = nixpkgs.lastModified or null;
                };
              };
            }
            # The revision a host reports (/run/current-system/configurationRevision) after a deploy.
            { system.configurationRevision = self.rev or self.dirtyRev or "unknown"; }
          ];
        };
    in
    {
      packages = lib.recursiveUpdate (forAllSystems (pkgs: rec {
        clawdinator = clawdinatorFor pkgs;
        default = clawdinator;
      })) {
        # The raw disk image AMIs are imported from (nix/image.nix: image.repart, no VM or KVM).
        x86_64-linux.image = self.nixosConfigurations.clawdinator-image.config.system.build.clawdinatorImage;
      };

      overlays.default = final: _prev: { clawdinator = clawdinatorFor final; };

      # The module with the runtime's module it configures (services.openclaw-gateway).
      nixosModules.clawdinator = {
        imports = [
          ./nix/module.nix
          nix-openclaw.nixosModules.openclaw-gateway
        ];
      };
      nixosModules.default = self.nixosModules.clawdinator;

      nixosConfigurations =
        lib.mapAttrs' (name: entry: lib.nameValuePair entry.host (mkHost name)) registry
        // {
          # The image every AMI is built from: no name yet. At boot it runs only the bootstrap,
          # which reads instance.env and switches to nixosConfigurations.<host>.
          clawdinator-image = (mkHost null).extendModules { modules = [ ./nix/image.nix ]; };
        };
    };
}
