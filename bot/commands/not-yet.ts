// A command whose jobs do not exist yet: registered so the whole surface is there from day
// one, answering honestly instead of pretending.
import type { CommandModule } from '../types.js';

export function notYet(data: CommandModule['data'], what: string): CommandModule {
  return {
    data,
    permission: () => data.name,
    ack: () => 'defer-ephemeral',
    async execute(_inv, res) {
      await res.send({ content: `/${data.name} is not available yet: ${what} is still being built.`, ephemeral: true });
    },
  };
}
