import { SlashCommandBuilder } from '@discordjs/builders';
import { notYet } from './not-yet.js';

export const data = new SlashCommandBuilder()
  .setName('jobs')
  .setDescription('Recent, running and failed fleet jobs')
  .addStringOption((o) =>
    o
      .setName('filter')
      .setDescription('which jobs (default: recent)')
      .addChoices(
        { name: 'recent', value: 'recent' },
        { name: 'running', value: 'running' },
        { name: 'failed', value: 'failed' },
      ),
  );

export const jobs = notYet(data, 'the job engine');
