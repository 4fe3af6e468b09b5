import { SlashCommandBuilder } from '@discordjs/builders';
import { notYet } from './not-yet.js';
import { NAME_MAX, NAME_MIN } from './options.js';

export const data = new SlashCommandBuilder()
  .setName('retire')
  .setDescription('Destroy a CLAWDINATOR (asks for confirmation)')
  .addStringOption((o) =>
    o
      .setName('name')
      .setDescription('the member to retire')
      .setRequired(true)
      .setMinLength(NAME_MIN)
      .setMaxLength(NAME_MAX),
  );

export const retire = notYet(data, 'the retire job');
