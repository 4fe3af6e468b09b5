import { SlashCommandBuilder } from '@discordjs/builders';
import { notYet } from './not-yet.js';
import { AMI_MAX, AMI_MIN, NAME_MAX, NAME_MIN } from './options.js';

export const data = new SlashCommandBuilder()
  .setName('replace')
  .setDescription('Replace a CLAWDINATOR with a new instance (asks for confirmation)')
  .addStringOption((o) =>
    o
      .setName('name')
      .setDescription('the member to replace')
      .setRequired(true)
      .setMinLength(NAME_MIN)
      .setMaxLength(NAME_MAX),
  )
  .addStringOption((o) =>
    o.setName('ami').setDescription('AMI id (default: the one recorded)').setMinLength(AMI_MIN).setMaxLength(AMI_MAX),
  );

export const replace = notYet(data, 'the replace job');
