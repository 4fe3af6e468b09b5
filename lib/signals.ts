// A stop request (SIGTERM from systemd, Ctrl-C) for the long-running commands. Listened for
// from the very start: a signal that arrives while the command is still starting must stop
// it cleanly too, not kill it half-started.
export function stopRequested(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
}
