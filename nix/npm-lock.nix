# package-lock.json with each entry's tarball URL filled in where npm left it out, for
# importNpmLock (nix/package.nix). This project's lock records no `resolved` URLs (npm's
# omit-lockfile-registry-resolved), only each package's name, version and integrity hash;
# the URL follows the registry's layout: <registry>/<name>/-/<unscoped name>-<version>.tgz.
# Builtins only, so test/nix/npm-lock.test.ts evaluates it with nix-instantiate alone.
{
  # The parsed package-lock.json.
  lock,
  # The npm registry's base URL ("https://<host>/"); null: fail if an entry needs it.
  npmRegistry,
}:
let
  last = list: builtins.elemAt list (builtins.length list - 1);
  split = sep: s: builtins.filter builtins.isString (builtins.split sep s);
  # node_modules/a/node_modules/@s/b → @s/b
  nameOf = path: entry: entry.name or (last (split "node_modules/" path));
  base =
    if npmRegistry == null then
      throw "nix/package.nix: package-lock.json has entries without `resolved`: write the npm registry's base URL into nix/npm-registry.url"
    else
      let
        m = builtins.match "(.*[^/])/*" npmRegistry;
      in
      builtins.head m;
  tarball = name: version: "${base}/${name}/-/${last (split "/" name)}-${version}.tgz";
  # Bundled entries (inBundle) and links carry no integrity: they come with their parent.
  needsUrl = path: entry: path != "" && !(entry ? resolved) && !(entry.link or false) && entry ? integrity;
in
lock
// {
  packages = builtins.mapAttrs (
    path: entry: if needsUrl path entry then entry // { resolved = tarball (nameOf path entry) entry.version; } else entry
  ) lock.packages;
}
