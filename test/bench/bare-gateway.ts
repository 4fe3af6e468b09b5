// The floor of the gateway benches: a bare discord.js client that only defers.
// `node bare-gateway.js <api-url> <token>`; with a third argument "idle" it only logs in.
import { Client, Events, GatewayIntentBits } from 'discord.js';

const [api, token, mode] = process.argv.slice(2);
const client = new Client({ intents: [GatewayIntentBits.Guilds], rest: { api } });
if (mode !== 'idle') {
  client.on(Events.InteractionCreate, (interaction) => {
    if (interaction.isRepliable()) void interaction.deferReply().catch(() => {});
  });
}
client.once(Events.ClientReady, () => process.stdout.write('ready\n'));
await client.login(token);
process.on('SIGTERM', () => {
  void client.destroy().then(() => process.exit(0));
});
