# The agent's toolchain, once: the packages on the host (and on the runtime's PATH) and the
# list the agent reads, rendered at build time into /etc/clawdinator/tools.md (seed-workspace
# appends it to the workspace's TOOLS.md at every start). Adding a tool is one entry here.
#
# Only builtins, so the rendering can be evaluated without nixpkgs (test/nix/agent-tools.test.ts
# does, with stand-in packages).
{
  pkgs,
  # More entries from the module: { name, description, package ? null } (a null package is a
  # tool the module installs itself, listed for the agent only).
  extra ? [ ],
}:
let
  has = name: builtins.hasAttr name pkgs;
  pick = names: builtins.head (builtins.filter has names ++ [ null ]);
  entry = name: attrs: description: {
    inherit name description;
    package = if builtins.isList attrs then (let a = pick attrs; in if a == null then null else pkgs.${a}) else pkgs.${attrs};
  };
  base = [
    (entry "gh" "gh" "GitHub CLI; authenticated as the project's GitHub App (GH_CONFIG_DIR, refreshed by the control plane).")
    (entry "git" "git" "Your repos under ~/repos; commits carry the App's bot identity.")
    (entry "curl" "curl" "HTTP requests.")
    (entry "jq" "jq" "JSON on the command line.")
    (entry "python3" "python3" "Python 3, for scripts and the repos' tooling.")
    (entry "rg" "ripgrep" "ripgrep: fast search through files.")
    (entry "node" [ "nodejs_22" "nodejs" ] "Node.js, for the repos' JavaScript tooling.")
    (entry "pnpm" [ "pnpm_10" "pnpm" ] "pnpm, the repos' package manager.")
    (entry "flock" "util-linux" "File locks (the memory tools take the same ones).")
  ];
  # The pi coding agent where nixpkgs packages it; its SDKs reach the models through the model
  # proxy like the runtime does (ANTHROPIC_BASE_URL / OPENAI_BASE_URL with a placeholder key).
  pi = if has "pi-coding-agent" then [ (entry "pi" "pi-coding-agent" "Pi coding agent (models through the local model proxy).") ] else [ ];
  entries = base ++ pi ++ extra;
  line = e: "- **${e.name}** — ${e.description}";
in
{
  inherit entries;
  packages = builtins.filter (p: p != null) (map (e: e.package) entries);
  markdown = ''
    ## Installed toolchain (Nix, rendered at build time)

    ${builtins.concatStringsSep "\n" (map line entries)}
  '';
}
