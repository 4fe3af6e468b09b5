# The host basics of the original CLAWDINATOR (nix/hosts/clawdinator-common.nix there): a swap
# file (agents build and test large repos on t3-sized hosts), the SSM agent (deploys and the
# fleet's own commands run through AWS Systems Manager), and SSH off unless the operator's
# settings open it: CLAWDINATOR_SSH_CIDRS is also what opens port 22 in the instance's
# security group (infra/), so the daemon runs exactly where the network lets anyone reach it.
{
  config,
  lib,
  ...
}:
let
  cfg = config.services.clawdinator;
  sshCidrs = cfg.settings.CLAWDINATOR_SSH_CIDRS or [ ];
  sshOpen = sshCidrs != [ ] && sshCidrs != "[]";
in
{
  options.services.clawdinator = {
    swapMiB = lib.mkOption {
      type = lib.types.ints.unsigned;
      default = 8192;
      description = "Size of /swapfile in MiB (the original's 8 GiB); 0 for none.";
    };
    sshAuthorizedKeys = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = ''
        Public keys allowed to log in as root over SSH, when the operator's settings open SSH
        (services.clawdinator.settings.CLAWDINATOR_SSH_CIDRS non-empty). Changes still go
        through the repo and a deploy: SSH is for looking, not for fixing.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    swapDevices = lib.mkIf (cfg.swapMiB > 0) [
      {
        device = "/swapfile";
        size = cfg.swapMiB;
      }
    ];

    services.amazon-ssm-agent.enable = lib.mkDefault true;

    # Above a host file's mkDefault (1000), below a plain definition (100).
    services.openssh.enable = lib.mkOverride 900 sshOpen;
    services.openssh.settings = lib.mkIf sshOpen {
      PasswordAuthentication = lib.mkDefault false;
      KbdInteractiveAuthentication = lib.mkDefault false;
      PermitRootLogin = lib.mkDefault "prohibit-password";
    };
    users.users.root.openssh.authorizedKeys.keys = lib.mkIf sshOpen cfg.sshAuthorizedKeys;

    assertions = [
      {
        assertion = !sshOpen || cfg.sshAuthorizedKeys != [ ];
        message = "services.clawdinator: CLAWDINATOR_SSH_CIDRS opens SSH, but services.clawdinator.sshAuthorizedKeys names no key";
      }
    ];
  };
}
