# One CLAWDINATOR host on EC2. A function of the instance name (the registry key, which the
# bootstrap reads from /var/lib/clawdinator/instance.env as CLAWDINATOR_INSTANCE_NAME): the
# flake builds nixosConfigurations.<host> for every entry of infra/fleet.json, and
# clawdinator-image (instanceName = null) for the AMI, which runs only the bootstrap.
{
  instanceName ? null,
}:
{
  lib,
  modulesPath,
  ...
}:
{
  imports = [
    "${modulesPath}/virtualisation/amazon-image.nix"
    ../module.nix
  ];

  services.clawdinator = {
    enable = true;
    inherit instanceName;
    # The fleet's ElastiCache (TLS, auth token in /run/clawdinator-ops/redis-password).
    # Placeholder: set to the base stack's redis endpoint output.
    redisUrl = lib.mkDefault "rediss://clawdinator-redis.invalid:6379";
    # The fleet's settings (CLAWDINATOR_JOB_PUBLIC_KEYS, CLAWDINATOR_BOOTSTRAP_BUCKET, …) go in
    # services.clawdinator.settings here; which key each unit signs with is fixed by units.json.
  };

  # Changes go through the repo → deploy pipeline, never by hand on a host.
  services.openssh.enable = lib.mkDefault false;
  nix.settings.experimental-features = [
    "nix-command"
    "flakes"
  ];

  system.stateVersion = "25.05";
}
