import { SlashCommandBuilder } from '@discordjs/builders';
import { notYet } from './not-yet.js';
import { AMI_MAX, AMI_MIN, INSTANCE_TYPES, NAME_MAX, NAME_MIN } from './options.js';

export const data = new SlashCommandBuilder()
  .setName('spawn')
  .setDescription('Create a new CLAWDINATOR')
  .addStringOption((o) =>
    o
      .setName('name')
      .setDescription('clawdinator-<n>; needs its own Discord token secret')
      .setRequired(true)
      .setMinLength(NAME_MIN)
      .setMaxLength(NAME_MAX),
  )
  .addStringOption((o) =>
    o
      .setName('instance-type')
      .setDescription('EC2 instance type (default from settings)')
      .addChoices(...INSTANCE_TYPES.map((t) => ({ name: t, value: t }))),
  )
  .addStringOption((o) =>
    o
      .setName('ami')
      .setDescription('AMI id (default: the latest available)')
      .setMinLength(AMI_MIN)
      .setMaxLength(AMI_MAX),
  );

export const spawn = notYet(data, 'the spawn job');
