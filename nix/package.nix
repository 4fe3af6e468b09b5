# The `clawdinator` CLI, built from this repository with buildNpmPackage.
{
  lib,
  buildNpmPackage,
  nodejs_20,
  python3,
  makeWrapper,
  util-linux,
  src,
}:
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

  # Placeholder: no network where this was written. Fill it in on a machine with network:
  # run `nix build .#clawdinator`, copy the "got: sha256-…" hash from the error into here
  # (and again whenever package-lock.json changes).
  npmDepsHash = lib.fakeHash;

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
