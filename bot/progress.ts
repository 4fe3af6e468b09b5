// How a job event looks in Discord: a compact progress view (a bar, the current step, the
// elapsed time), then the result. Events are data from workers; this is the only renderer.
// Buttons never come from the event: the caller passes those of the job's signed pending
// record (approval.ts: readPending) or of a stray's signed offer (stray-offer.ts), or none.
import { REBUILD_STAGES, rebuildStageOf } from '../jobs/ami/stages.js';
import type { JobEvent } from '../jobs/engine/notify.js';
import type { Button, Reply } from './types.js';

const BAR = 12;

export function elapsed(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

export function bar(percent: number | undefined): string {
  if (percent === undefined) return '';
  const filled = Math.round((Math.min(100, Math.max(0, percent)) / 100) * BAR);
  return `${'▰'.repeat(filled)}${'▱'.repeat(BAR - filled)} ${Math.round(percent)}%`;
}

export function renderEvent(event: JobEvent, now: number, buttons: Button[] = []): Reply {
  const job = event.jobId ? `\`${event.jobId}\`` : '';
  const since = event.startedAt ? ` · ${elapsed(now - event.startedAt)}` : '';
  switch (event.kind) {
    case 'progress':
      return {
        content: [`⏳ ${job}`, stages(event), bar(event.percent), `${event.text}${since}`].filter(Boolean).join('\n'),
      };
    case 'result':
      return { content: `${event.ok ? '✅' : '❌'} ${job} ${event.text}${since}`.trim() };
    case 'alert':
      return buttons.length > 0 ? { content: `🚨 ${event.text}`, buttons } : { content: `🚨 ${event.text}` };
    case 'confirm':
      return buttons.length > 0 ? { content: `❓ ${event.text}`, buttons } : { content: `❓ ${event.text}` };
  }
}

/**
 * A job with stages (a rebuild: resolve → build → upload → import → register → rollout) shows
 * them all, those done ticked and the current one highlighted; '' for other jobs.
 */
export function stages(event: Pick<JobEvent, 'type' | 'step'>): string {
  if (event.type !== 'rebuild-ami') return '';
  const current = rebuildStageOf(event.step);
  if (current === undefined) return '';
  const at = REBUILD_STAGES.indexOf(current);
  return REBUILD_STAGES.map((stage, i) => (i < at ? `✓ ${stage}` : i === at ? `**▶ ${stage}**` : stage)).join(' · ');
}
