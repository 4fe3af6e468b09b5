// Who did something in Discord, as the bot saw it: what authorization decides on, and what
// a job signed by the gateway carries so the worker can decide again.
export interface Actor {
  userId: string;
  userName: string;
  roles: string[];
  /** null in a DM. */
  guildId: string | null;
  channelId: string;
}
