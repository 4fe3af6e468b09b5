{
  description = "CLAWDINATOR fleet: the clawdinator control-plane CLI, its NixOS module and host configurations";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs =
    { self, nixpkgs }:
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
            # The revision a host reports (/run/current-system/configurationRevision) after a deploy.
            { system.configurationRevision = self.rev or self.dirtyRev or "unknown"; }
          ];
        };
    in
    {
      packages = forAllSystems (pkgs: rec {
        clawdinator = clawdinatorFor pkgs;
        default = clawdinator;
      });

      overlays.default = final: _prev: { clawdinator = clawdinatorFor final; };

      nixosModules.clawdinator = ./nix/module.nix;
      nixosModules.default = self.nixosModules.clawdinator;

      nixosConfigurations =
        lib.mapAttrs' (name: entry: lib.nameValuePair entry.host (mkHost name)) registry
        // {
          # The image every AMI is built from: no name yet. At boot it runs only the bootstrap,
          # which reads instance.env and switches to nixosConfigurations.<host>.
          clawdinator-image = mkHost null;
        };
    };
}
