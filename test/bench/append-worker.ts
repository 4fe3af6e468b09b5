// One long-lived process appending numbered lines to one memory file through the store:
// `node append-worker.js <root> <file> <worker-id> <count>`. Used by the concurrency test
// and the bench (16 of these at once). Each line is long enough that a torn write shows.
import { MemoryStore } from '../../memory/store.js';

const [root, file, id, count] = process.argv.slice(2);
if (root === undefined || file === undefined || id === undefined || count === undefined) {
  process.stderr.write('usage: append-worker <root> <file> <worker-id> <count>\n');
  process.exit(2);
}
const store = new MemoryStore({ root, maxBytes: 64 * 1024 * 1024, waitSeconds: 60 });
const pad = 'x'.repeat(80);
for (let i = 0; i < Number(count); i++) {
  await store.append(file, `w${id} ${i} ${pad} end`);
}
