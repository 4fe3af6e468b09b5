import { SlashCommandBuilder } from '@discordjs/builders';
import { notYet } from './not-yet.js';
import { DESTRUCTIVE_DEFAULT_PERMISSIONS, NAME_MAX, REV_MAX } from './options.js';

export const data = new SlashCommandBuilder()
  .setName('deploy')
  .setDescription('nixos-rebuild switch a revision on the fleet, canary first')
  .setDefaultMemberPermissions(DESTRUCTIVE_DEFAULT_PERMISSIONS)
  .addStringOption((o) => o.setName('rev').setDescription('git revision (default: main)').setMaxLength(REV_MAX))
  .addStringOption((o) => o.setName('target').setDescription('one member, or all (default)').setMaxLength(NAME_MAX));

export const deploy = notYet(data, 'the deploy job');
