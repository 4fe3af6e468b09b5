// Plan summaries from the JSON `terraform show -json` prints (the runner tests drive the
// real binary; these pin the edge cases).
import { describe, expect, it } from 'vitest';
import { formatSummary, summarize, unaskedDestroys, withinSummary } from '../../../jobs/terraform/summary.js';

const change = (address: string, actions: string[], mode = 'managed') => ({
  address,
  mode,
  type: 'aws_instance',
  change: { actions, before: { user_data: 'value' }, after: { auth_token: 'hunter2-hunter2-hunter2' } },
});

describe('plan summary', () => {
  const show = {
    format_version: '1.2',
    resource_changes: [
      change('aws_instance.host', ['delete', 'create']),
      change('aws_iam_role.role', ['update']),
      change('aws_iam_instance_profile.profile', ['no-op']),
      change('data.aws_region.region', ['read'], 'data'),
      change('aws_s3_bucket.old', ['delete']),
      change('aws_efs_file_system.memory', ['create']),
      change('aws_instance.blue', ['create', 'delete']),
    ],
  };

  it('counts like terraform and keeps addresses and actions only, sorted', () => {
    const summary = summarize(show);
    expect(summary).toEqual({
      add: 3,
      change: 1,
      destroy: 3,
      resources: [
        { address: 'aws_efs_file_system.memory', action: 'create' },
        { address: 'aws_iam_role.role', action: 'update' },
        { address: 'aws_instance.blue', action: 'replace' },
        { address: 'aws_instance.host', action: 'replace' },
        { address: 'aws_s3_bucket.old', action: 'delete' },
      ],
    });
    expect(JSON.stringify(summary)).not.toContain('hunter2');
  });

  it('names the destroys nobody asked for', () => {
    const summary = summarize(show);
    expect(unaskedDestroys(summary, {})).toEqual(['aws_instance.blue', 'aws_instance.host', 'aws_s3_bucket.old']);
    expect(unaskedDestroys(summary, { replace: ['aws_instance.host', 'aws_instance.blue'] })).toEqual([
      'aws_s3_bucket.old',
    ]);
    expect(unaskedDestroys(summary, { destroy: true })).toEqual([]);
  });

  it('formats one line, cut after a number of resources', () => {
    const summary = summarize(show);
    expect(formatSummary(summary, 2)).toBe(
      '3 to add, 1 to change, 3 to destroy: aws_efs_file_system.memory (create), aws_iam_role.role (update), and 3 more',
    );
    expect(formatSummary(summarize({}))).toBe('0 to add, 0 to change, 0 to destroy');
  });

  it('accepts a re-plan within the saved one: the same changes, or what remains of them', () => {
    const saved = summarize(show);
    const remaining = summarize({
      resource_changes: [change('aws_instance.host', ['create']), change('aws_iam_role.role', ['update'])],
    });
    expect(withinSummary(saved, saved)).toBe(true);
    expect(withinSummary(remaining, saved)).toBe(true);
    expect(withinSummary(summarize({}), saved)).toBe(true);
    const beyond = summarize({ resource_changes: [change('aws_iam_role.role', ['delete'])] });
    expect(withinSummary(beyond, saved)).toBe(false);
    const elsewhere = summarize({ resource_changes: [change('aws_instance.other', ['create'])] });
    expect(withinSummary(elsewhere, saved)).toBe(false);
  });

  it('learns the import action: an import block adopts what a killed apply made, within its saved create', () => {
    const importing = (address: string, actions: string[], id: string) => ({
      address,
      mode: 'managed',
      change: { actions, importing: { id } },
    });
    const resumed = summarize({
      resource_changes: [
        importing('aws_instance.host', ['no-op'], 'i-0abc'),
        importing('aws_iam_role.role', ['update'], 'clawdinator-3'),
        change('aws_iam_instance_profile.profile', ['create']),
      ],
    });
    expect(resumed).toEqual({
      add: 1,
      change: 0,
      destroy: 0,
      import: 2,
      resources: [
        { address: 'aws_iam_instance_profile.profile', action: 'create' },
        { address: 'aws_iam_role.role', action: 'import' },
        { address: 'aws_instance.host', action: 'import' },
      ],
    });
    expect(formatSummary(resumed)).toBe(
      '2 to import, 1 to add, 0 to change, 0 to destroy: aws_iam_instance_profile.profile (create), aws_iam_role.role (import), aws_instance.host (import)',
    );
    const saved = summarize({
      resource_changes: ['aws_instance.host', 'aws_iam_role.role', 'aws_iam_instance_profile.profile'].map((a) =>
        change(a, ['create']),
      ),
    });
    expect(withinSummary(resumed, saved)).toBe(true);
    // An import of something the saved plan did not create is beyond it.
    expect(withinSummary(resumed, summarize({ resource_changes: [change('aws_iam_role.role', ['create'])] }))).toBe(
      false,
    );
    expect(unaskedDestroys(resumed, {})).toEqual([]);
  });
});
