# The `clawdinator` CLI, built from this repository with buildNpmPackage.
{
  lib,
  buildNpmPackage,
  importNpmLock,
  nodejs_20,
  python3,
  makeWrapper,
  util-linux,
  src,
  # The npm registry's base URL ("https://<host>/"), for lock entries without `resolved`: this
  # project's package-lock.json records none (npm's omit-lockfile-registry-resolved), only
  # each package's name, version and integrity hash. The flake reads it from
  # nix/npm-registry.url (README: "Running a real fleet").
  npmRegistry ? null,
}:
let
  packageLock = import ./npm-lock.nix {
    lock = lib.importJSON "${src}/package-lock.json";
    inherit npmRegistry;
  };
in
buildNpmPackage {
  pname = "clawdinator";
  version = (lib.importJSON ../package.json).version;
  nodejs = nodejs_20;

  src = lib.cleanSourceWith {
    inherit src;
    filter =
      path: _type:
      !(builtins.elem (baseNameOf path) [
        "node_modules"
        "dist"
        "cdktf.out"
        ".sandbox"
        "coverage"
        ".terraform"
      ]);
  };

  # Every dependency fetched by the integrity hash package-lock.json records (fetchurl with
  # `hash = integrity`): no separate hash to keep in step with the lock.
  npmDeps = importNpmLock {
    package = lib.importJSON "${src}/package.json";
    inherit packageLock;
  };
  npmConfigHook = importNpmLock.npmConfigHook;

  # fs-ext is a native addon (node-gyp); the other install scripts are not needed.
  nativeBuildInputs = [
    python3
    makeWrapper
  ];
  npmBuildScript = "build";

  # npm pack (buildNpmPackage's default install) skips dist/, which .gitignore lists:
  # install the built tree by hand, with production dependencies only.
  installPhase = ''
    runHook preInstall
    npm prune --omit=dev --no-audit --no-fund
    dir=$out/lib/clawdinator
    mkdir -p $dir $out/bin
    cp -r package.json dist node_modules memory workspace $dir/
    test ! -e infra/fleet.json || install -Dm644 infra/fleet.json $dir/infra/fleet.json
    makeWrapper ${nodejs_20}/bin/node $out/bin/clawdinator \
      --add-flags $dir/dist/cli/main.js \
      --prefix PATH : ${lib.makeBinPath [ util-linux ]}
    runHook postInstall
  '';

  meta = {
    description = "Control plane of a CLAWDINATOR fleet (ops bot, workers, shared memory tools)";
    mainProgram = "clawdinator";
    platforms = lib.platforms.linux;
  };
}
