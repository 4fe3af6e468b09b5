import { SlashCommandBuilder } from '@discordjs/builders';
import { notYet } from './not-yet.js';
import { DESTRUCTIVE_DEFAULT_PERMISSIONS, REV_MAX } from './options.js';

export const data = new SlashCommandBuilder()
  .setName('rebuild-ami')
  .setDescription('Build a new base image (AMI) from a revision')
  .setDefaultMemberPermissions(DESTRUCTIVE_DEFAULT_PERMISSIONS)
  .addStringOption((o) => o.setName('rev').setDescription('git revision (default: main)').setMaxLength(REV_MAX))
  .addBooleanOption((o) => o.setName('rollout').setDescription('replace the fleet with it afterwards, canary first'));

export const rebuildAmi = notYet(data, 'the image pipeline');
