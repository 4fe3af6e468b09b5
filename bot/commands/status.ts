import { SlashCommandBuilder } from '@discordjs/builders';
import { notYet } from './not-yet.js';
import { NAME_MAX, NAME_MIN } from './options.js';

export const data = new SlashCommandBuilder()
  .setName('status')
  .setDescription('Show the fleet, or one member in detail')
  .addStringOption((o) =>
    o
      .setName('name')
      .setDescription('a fleet member, e.g. clawdinator-2')
      .setMinLength(NAME_MIN)
      .setMaxLength(NAME_MAX),
  );

export const status = notYet(data, 'the fleet status (job engine)');
