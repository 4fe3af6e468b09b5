// The model provider stand-in in a process of its own (the bench: a direct request and a
// proxied one then cross the same number of process boundaries to reach it, but the proxy's).
// argv[2]: the usage JSON. Prints `ready <url>` and serves until SIGTERM.
import { startModelStandin } from './model-standin.js';

const standin = await startModelStandin(JSON.parse(process.argv[2] ?? '{}'));
process.stdout.write(`ready ${standin.url}\n`);
process.once('SIGTERM', () => {
  void standin.close().then(() => process.exit(0));
});
