// Every command of the ops bot. Adding one: a file in this folder and a line here.
import type { CommandModule } from '../types.js';
import { deploy } from './deploy.js';
import { doctor } from './doctor.js';
import { jobs } from './jobs.js';
import { logs } from './logs.js';
import { memory } from './memory.js';
import { rebuildAmi } from './rebuild-ami.js';
import { replace } from './replace.js';
import { retire } from './retire.js';
import { spawn } from './spawn.js';
import { status } from './status.js';

export const commands: CommandModule[] = [
  memory,
  status,
  spawn,
  retire,
  replace,
  rebuildAmi,
  deploy,
  doctor,
  logs,
  jobs,
];
