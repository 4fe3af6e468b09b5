#!/usr/bin/env bash
# clawdinator-host: what the control plane may ask of this host, run as root by the SSM agent
# through the `clawdinator-host` document (infra/host-document.ts). The document hands the
# values over as environment variables checked against its patterns; this script checks them
# again and never evaluates them. Installed by nix/module.nix (nix/units.json `hostScripts`).
#
# The document calls it with five arguments, whatever the action: <action> <sha> <run> <unit> <lines>
# (unused ones empty):
#   switch-start  <sha> <run>    record the revision this host runs, then start the switch
#                                detached (systemd-run): the switch may restart the SSM agent
#                                or the network
#   switch-status ''    <run>    the run's result file, or that it still runs
#   doctor                       the verification checklist: ok|fail|skip<TAB>check<TAB>evidence
#   logs          ''    ''  <unit> <lines>   the last lines of a unit's journal (allow-list, capped)
#   switch-run    <sha> <run>    (the detached unit) build, switch, check this host's health,
#                                roll back locally when it fails, write the result file
#
# Everything printed goes through `clawdinator host redact` (the secrets this host holds, by
# value and by pattern) before SSM carries it off; when that fails, nothing is printed.
set -euo pipefail
umask 077

# Paths, re-rooted by the tests (CLAWDINATOR_HOST_ROOT) as the host contract test does.
root=${CLAWDINATOR_HOST_ROOT:-}
state_dir=$root/var/lib/clawdinator/deploy
instance_env=$root/var/lib/clawdinator/instance.env
host_env=$root/etc/clawdinator/host.env
build_info=$root/etc/clawdinator/build-info.json
current=$root/run/current-system
sentinel=$root/var/lib/clawdinator/.bootstrap-ok
tunnel_conf=$root/var/lib/clawdinator/efs-stunnel.conf
memory=$root/memory
repo_seeds=$root/var/lib/clawd/repo-seeds
secrets_dirs=("$root/run/clawdinator-ops" "$root/run/clawdinator")
# How long the gateway and worker have to be active again after a switch.
health_seconds=${CLAWDINATOR_HEALTH_SECONDS:-120}
# The units the control plane may read the journal of (infra/host-document.ts LOG_UNITS).
log_units=(clawdinator-bootstrap clawdinator-efs-tunnel memory.mount clawdinator-memory-init
  clawdinator-seed-repos clawdinator-gateway clawdinator-worker clawdinator-model-proxy
  clawdinator-switch clawdinator-deploy clawdinator-agent)
# The units a switch must leave running (each only if it ran before the switch).
service_units=(clawdinator-gateway clawdinator-worker clawdinator-model-proxy clawdinator-agent)
log_lines_max=500
# The switch's token directory (global: the EXIT trap removes it however the switch ends).
tokens=""

die() {
  printf 'clawdinator-host: %s\n' "$1" >&2
  exit 2
}

valid_sha() { [[ $1 =~ ^[0-9a-f]{40}$ ]]; }
valid_run() { [[ $1 =~ ^[a-z0-9][a-z0-9-]{0,62}$ ]]; }

redact() {
  clawdinator host redact --secrets-dir "${secrets_dirs[@]}"
}

# A value from a KEY=value file, never sourced (the file is data, not a script).
env_value() {
  local file=$1 key=$2
  [ -f "$file" ] || return 0
  sed -n "s/^${key}=//p" "$file" | tail -n 1 | tr -d "\"'"
}

revision() {
  local rev
  rev=$(tr -cd 'A-Za-z0-9._-' <"$current/configurationRevision" 2>/dev/null || true)
  printf '%s' "${rev:0:64}"
}

active() { [ "$(systemctl is-active "$1" 2>/dev/null || true)" = active ]; }

# ── switch ─────────────────────────────────────────────────────────────────────────────

switch_start() {
  local sha=$1 run=$2 dir previous state
  valid_sha "$sha" || die "switch-start: not a full commit sha"
  valid_run "$run" || die "switch-start: not a run id"
  dir=$state_dir/$run
  if [ -f "$dir/previous" ]; then
    # This run started before (a resumed job asks again): never a second switch.
    previous=$(cat "$dir/previous")
    state=running
    if [ -f "$dir/result.json" ]; then state='done'; fi
  else
    previous=$(revision)
    if [ "$previous" = "$sha" ]; then
      state=already
    else
      mkdir -p "$dir"
      # The units that run now: the health check wants them back.
      for unit in "${service_units[@]}"; do
        if active "$unit"; then printf '%s\n' "$unit"; fi
      done >"$dir/units"
      printf '%s\n' "$previous" >"$dir/previous.tmp"
      mv "$dir/previous.tmp" "$dir/previous"
      # Detached: the switch outlives this SSM command. One unit name, so two never overlap.
      systemd-run --unit=clawdinator-deploy --collect --no-block \
        --property=TimeoutStartSec=3600 --setenv=PATH="$PATH" \
        "$(readlink -f "$0")" switch-run "$sha" "$run"
      state=started
    fi
  fi
  printf 'switch %s: %s\n' "$run" "$state"
  jq -cn --arg run "$run" --arg sha "$sha" --arg previous "$previous" --arg state "$state" \
    '{run: $run, sha: $sha, previous: $previous, state: $state}'
}

switch_status() {
  local run=$1 dir
  valid_run "$run" || die "switch-status: not a run id"
  dir=$state_dir/$run
  if [ -f "$dir/result.json" ]; then
    cat "$dir/result.json"
  elif [ -f "$dir/previous" ]; then
    jq -cn --arg run "$run" '{run: $run, state: "running"}'
  else
    jq -cn --arg run "$run" '{run: $run, state: "unknown"}'
  fi
}

# The detached switch: build, switch, check, roll back on failure, write the result.
switch_run() {
  local sha=$1 run=$2 dir out flake host phase ok rolled units tail
  valid_sha "$sha" || die "switch-run: not a full commit sha"
  valid_run "$run" || die "switch-run: not a run id"
  dir=$state_dir/$run
  out=$dir/output
  flake=$(env_value "$host_env" CLAWDINATOR_HOST_FLAKE)
  host=$(env_value "$instance_env" CLAWDINATOR_HOST)
  [[ $flake =~ ^github:[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$ ]] || die "switch-run: no CLAWDINATOR_HOST_FLAKE in $host_env"
  [[ $host =~ ^[a-z0-9][a-z0-9-]{0,62}$ ]] || die "switch-run: no CLAWDINATOR_HOST in $instance_env"
  # The flake's token: a root-only file for this switch, removed however it ends.
  tokens=$(mktemp -d "$root/run/clawdinator-switch.XXXXXX")
  trap 'rm -rf "${tokens:-/nonexistent}"' EXIT
  ok=false
  rolled=false
  phase=token
  if clawdinator host deploy-token --out "$tokens/nix.conf" >>"$out" 2>&1; then
    [ -f "$tokens/nix.conf" ] && export NIX_USER_CONF_FILES=$tokens/nix.conf
    phase=build
    if nixos-rebuild build --flake "$flake/$sha#$host" >>"$out" 2>&1; then
      phase=switch
      if nixos-rebuild switch --flake "$flake/$sha#$host" >>"$out" 2>&1; then
        phase=health
        if healthy "$sha" "$dir" >>"$out" 2>&1; then
          ok=true
          phase='done'
        fi
      fi
    fi
  fi
  unset NIX_USER_CONF_FILES
  if [ "$ok" = false ] && { [ "$phase" = switch ] || [ "$phase" = health ]; }; then
    # The previous generation, from the local profile: no network needed.
    echo "health check failed or switch incomplete: rolling back to the previous generation" >>"$out"
    if nixos-rebuild switch --rollback >>"$out" 2>&1; then rolled=true; fi
  fi
  units=$(unit_states "$dir")
  # Redacted by the token too (its directory read as one more secrets dir): nix may print it.
  # Fail closed: nothing of the output leaves when redaction fails, but the result still does.
  tail=$(tail -n 40 "$out" | clawdinator host redact --secrets-dir "${secrets_dirs[@]}" "$tokens") ||
    tail='(the output is withheld: redaction failed on the host)'
  rm -rf "$tokens"
  jq -cn --arg run "$run" --arg sha "$sha" --arg previous "$(cat "$dir/previous")" \
    --argjson ok "$ok" --arg phase "$phase" --arg revision "$(revision)" --argjson rolledBack "$rolled" \
    --argjson units "$units" --arg at "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --arg tail "$tail" \
    '{run: $run, state: "done", sha: $sha, previous: $previous, ok: $ok, phase: $phase, revision: $revision,
      rolledBack: $rolledBack, units: $units, at: $at, tail: $tail}' >"$dir/result.tmp"
  mv "$dir/result.tmp" "$dir/result.json"
}

# After the switch: the revision is the sha, and every unit that ran before runs again.
healthy() {
  local sha=$1 dir=$2 deadline unit down
  deadline=$((SECONDS + health_seconds))
  while :; do
    down=""
    if [ "$(revision)" != "$sha" ]; then down="configurationRevision $(revision)"; fi
    while read -r unit; do
      [ -n "$unit" ] || continue
      if ! active "$unit"; then down="$down $unit"; fi
    done <"$dir/units"
    if [ -z "$down" ]; then
      echo "health check passed: on $sha, $(tr '\n' ' ' <"$dir/units")active"
      return 0
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "health check failed after ${health_seconds}s:$down not back"
      return 1
    fi
    sleep 2
  done
}

unit_states() {
  local dir=$1 unit args=()
  for unit in "${service_units[@]}"; do
    if grep -qx "$unit" "$dir/units" 2>/dev/null; then
      args+=(--arg "$unit" "$(systemctl is-active "$unit" 2>/dev/null || true)")
    fi
  done
  jq -cn "${args[@]}" '$ARGS.named'
}

# ── doctor ─────────────────────────────────────────────────────────────────────────────

check() {
  # One line: state, check, evidence (no tabs or newlines in the evidence).
  printf '%s\t%s\t%s\n' "$1" "$2" "$(printf '%s' "$3" | tr '\t\n' '  ' | cut -c1-280)"
}

unit_check() {
  local label=$1 unit=$2 state
  state=$(systemctl is-active "$unit" 2>/dev/null || true)
  if [ "$state" = active ]; then
    check ok "$label" "$unit ${state}, since $(systemctl show -p ActiveEnterTimestamp --value "$unit" 2>/dev/null || true)"
  else
    check fail "$label" "$unit ${state:-unknown}"
  fi
}

doctor() {
  local fstype seeds pct avail total pressure sync rev since secrets bad
  if active clawdinator-bootstrap; then
    check ok bootstrap "clawdinator-bootstrap active; $(tr -cd 'A-Za-z0-9 ._/:-' <"$sentinel" 2>/dev/null | cut -c1-120 || echo 'no sentinel')"
  else
    check fail bootstrap "clawdinator-bootstrap $(systemctl is-active clawdinator-bootstrap 2>/dev/null || true)"
  fi
  if [ -f "$tunnel_conf" ]; then unit_check 'memory tunnel' clawdinator-efs-tunnel; else
    check skip 'memory tunnel' "no EFS in this host's bundle"
  fi
  fstype=$(findmnt -n -o SOURCE,FSTYPE --target "$memory" 2>/dev/null | tr -s ' ' || true)
  case $fstype in
  *nfs4) check ok 'memory mount' "$fstype on /memory" ;;
  *) check fail 'memory mount' "/memory is ${fstype:-not mounted}" ;;
  esac
  unit_check 'memory init' clawdinator-memory-init
  # Names, modes and owners only: never a value.
  secrets=""
  bad=""
  for dir in "${secrets_dirs[@]}"; do
    for f in "$dir"/*; do
      [ -e "$f" ] || continue
      local mode
      mode=$(stat -c '%a %U' "$f")
      secrets="$secrets $(basename "$f") $mode,"
      case $(basename "$f") in *public-key.pem) continue ;; esac
      [ "${mode%% *}" = 400 ] || bad="$bad $(basename "$f")"
    done
  done
  if [ -z "$secrets" ]; then check fail secrets "none present"
  elif [ -n "$bad" ]; then check fail secrets "not 0400:$bad (present:${secrets%,})"
  else
    secrets=${secrets# }
    check ok secrets "${secrets%,}"
  fi
  unit_check gateway clawdinator-gateway
  unit_check worker clawdinator-worker
  if systemctl cat clawdinator-agent >/dev/null 2>&1; then unit_check 'agent runtime' clawdinator-agent; else
    check skip 'agent runtime' "no clawdinator-agent unit on this host"
  fi
  if [ "$(stat -f -c %T "$memory" 2>/dev/null || true)" = nfs ]; then check ok '/memory shared' "/memory is nfs"; else
    check fail '/memory shared' "/memory is $(stat -f -c %T "$memory" 2>/dev/null || echo missing), not the shared file system"
  fi
  seeds=$({ find "$repo_seeds" -mindepth 1 -maxdepth 1 -type d 2>/dev/null || true; } | wc -l)
  if [ "$seeds" -gt 0 ]; then check ok 'repos seeded' "$seeds repositories in /var/lib/clawd/repo-seeds"; else
    check fail 'repos seeded' "no repository in /var/lib/clawd/repo-seeds"
  fi
  pct=$(df -P "$root/" | awk 'NR==2 {gsub("%", "", $5); print $5}')
  if [ "${pct:-100}" -lt 90 ]; then check ok disk "/ ${pct}% used"; else check fail disk "/ ${pct}% used"; fi
  avail=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
  total=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
  pressure=$(awk '/^some/ {sub("avg60=", "", $3); print $3}' /proc/pressure/memory 2>/dev/null || echo '?')
  if [ $((avail * 100 / total)) -ge 10 ]; then
    check ok 'memory pressure' "$((avail * 100 / total))% available, some avg60 $pressure"
  else
    check fail 'memory pressure' "$((avail * 100 / total))% available, some avg60 $pressure"
  fi
  sync=$(timedatectl show -p NTPSynchronized --value 2>/dev/null || true)
  if [ "$sync" = yes ]; then check ok clock "NTP synchronized"; else check fail clock "NTP synchronized: ${sync:-unknown}"; fi
  rev=$(revision)
  since=$(date -u -d "@$(stat -c %Y "$current" 2>/dev/null || echo 0)" +%Y-%m-%dT%H:%M:%SZ)
  if [ -n "$rev" ]; then
    check ok revision "$rev since $since; build info $(tr -d '\n' <"$build_info" 2>/dev/null | cut -c1-120 || echo none)"
  else
    check fail revision "no configurationRevision"
  fi
}

# ── logs ───────────────────────────────────────────────────────────────────────────────

logs() {
  local unit=$1 lines=$2 known=false u
  for u in "${log_units[@]}"; do [ "$u" = "$unit" ] && known=true; done
  [ "$known" = true ] || die "logs: unit not on the allow-list"
  if ! [[ $lines =~ ^[1-9][0-9]{0,2}$ ]] || [ "$lines" -gt "$log_lines_max" ]; then
    die "logs: lines from 1 to $log_lines_max"
  fi
  journalctl --unit="$unit" --lines="$lines" --no-pager --output=short-iso --quiet 2>&1
}

# ── main ───────────────────────────────────────────────────────────────────────────────

action=${1:-}
case $action in
switch-start) switch_start "${2:-}" "${3:-}" | redact ;;
switch-status) switch_status "${3:-}" | redact ;;
switch-run) switch_run "${2:-}" "${3:-}" ;;
doctor) doctor | redact ;;
logs) logs "${4:-}" "${5:-}" | redact ;;
*) die "unknown action (switch-start, switch-status, doctor, logs)" ;;
esac
