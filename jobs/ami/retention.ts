// Our images at a glance (`ami list`) and their retention (`ami prune`, the weekly ami-prune
// job). Prune keeps the newest N images of ours, every image a member runs or is recorded to
// run (the registry's `ami`, a live instance's ImageId), and every image not yet available
// (an import or registration under way); everything else of ours (`clawdinator=true`) is
// deregistered with its snapshots (one call: DeleteAssociatedSnapshots) and its uploaded raw
// image object. Never an image that is not ours, never the newest (N is at least 1).
import type { FleetRegistry } from '../../infra/registry.js';
import type { AmiInfo, Cloud, DeregisterResult } from '../cloud/types.js';
import { isImageKey, OBJECT_TAG, REVISION_TAG } from './image.js';

export interface ImageRow {
  image: AmiInfo;
  revision: string | null;
  /** Members whose live instance runs it. */
  runningOn: string[];
  /** Members whose registry entry records it. */
  recordedFor: string[];
}

/** Our images, newest first, with what runs or records them. */
export async function imageRows(cloud: Cloud, registry: FleetRegistry): Promise<ImageRow[]> {
  const [images, instances] = await Promise.all([cloud.listAmis(), cloud.listFleetInstances()]);
  return images.map((image) => ({
    image,
    revision: image.tags[REVISION_TAG] ?? null,
    runningOn: instances
      .filter((i) => i.imageId === image.imageId && i.state !== 'terminated' && i.name !== null)
      .map((i) => i.name as string)
      .sort(),
    recordedFor: Object.entries(registry)
      .filter(([, entry]) => entry.ami === image.imageId)
      .map(([name]) => name)
      .sort(),
  }));
}

/** "3 d", "5 h", "12 min" */
export function age(from: string | null, now: number): string {
  if (from === null) return '?';
  const minutes = Math.max(0, Math.floor((now - Date.parse(from)) / 60_000));
  if (minutes < 60) return `${minutes} min`;
  if (minutes < 48 * 60) return `${Math.floor(minutes / 60)} h`;
  return `${Math.floor(minutes / 1440)} d`;
}

export function formatImageRows(rows: ImageRow[], now: number): string {
  if (rows.length === 0) return 'no images of ours (clawdinator=true): build the first one (README, Day 0)';
  return rows
    .map((r, i) => {
      const runs = r.runningOn.length > 0 ? `runs on ${r.runningOn.join(', ')}` : 'runs nowhere';
      const recorded = r.recordedFor.filter((n) => !r.runningOn.includes(n));
      const rec = recorded.length > 0 ? `; recorded for ${recorded.join(', ')}` : '';
      const newest = i === 0 ? ' (newest)' : '';
      return `${r.image.imageId}  ${r.image.name}  ${r.image.state}  rev ${r.revision?.slice(0, 12) ?? '—'}  ${age(r.image.creationDate, now)} old  ${runs}${rec}${newest}`;
    })
    .join('\n');
}

export interface PrunePlan {
  keep: { image: AmiInfo; reasons: string[] }[];
  remove: AmiInfo[];
}

/** Which images go: `images` newest first (listAmis' order), `inUse` the ids members run or record. */
export function planPrune(images: AmiInfo[], inUse: Set<string>, keepNewest: number): PrunePlan {
  if (!Number.isInteger(keepNewest) || keepNewest < 1) throw new RangeError('prune keeps at least the newest image');
  const plan: PrunePlan = { keep: [], remove: [] };
  images.forEach((image, index) => {
    const reasons: string[] = [];
    if (index === 0) reasons.push('newest');
    else if (index < keepNewest) reasons.push('recent');
    if (inUse.has(image.imageId)) reasons.push('in use');
    if (image.state !== 'available' && image.state !== 'failed') reasons.push(image.state);
    if (reasons.length > 0) plan.keep.push({ image, reasons });
    else plan.remove.push(image);
  });
  return plan;
}

export interface PruneResult {
  plan: PrunePlan;
  removed: { image: AmiInfo; deregister: DeregisterResult; object: string | null }[];
}

/** The ids members run (a live instance's ImageId) or are recorded to run (the registry's `ami`). */
export async function imagesInUse(cloud: Cloud, registry: FleetRegistry): Promise<Set<string>> {
  const instances = await cloud.listFleetInstances();
  const ids = new Set<string>();
  for (const i of instances) if (i.state !== 'terminated' && i.imageId !== '') ids.add(i.imageId);
  for (const entry of Object.values(registry)) if (entry.ami !== undefined) ids.add(entry.ami);
  return ids;
}

/**
 * Prunes (or with `dryRun`, only plans). Each removal is idempotent by itself (an image already
 * gone deregisters as "not deregistered", a missing object deletes as nothing), so a prune
 * that died halfway is simply run again.
 */
export async function pruneImages(
  cloud: Cloud,
  options: { registry: FleetRegistry; keep: number; bucket: string; dryRun?: boolean },
): Promise<PruneResult> {
  // In use first: an image must never look unused because the listing raced a launch.
  const inUse = await imagesInUse(cloud, options.registry);
  const plan = planPrune(await cloud.listAmis(), inUse, options.keep);
  const removed: PruneResult['removed'] = [];
  if (options.dryRun) return { plan, removed };
  for (const image of plan.remove) {
    const deregister = await cloud.deregisterAmi(image.imageId);
    // Only a key of the shape we upload: a tag cannot point prune at another object.
    const key = image.tags[OBJECT_TAG];
    const object = key !== undefined && isImageKey(key) ? key : null;
    if (object !== null) await cloud.deleteKeys(options.bucket, [object]);
    removed.push({ image, deregister, object });
  }
  return { plan, removed };
}

export function formatPrune(result: PruneResult, dryRun = false): string {
  const lines: string[] = [];
  for (const k of result.plan.keep)
    lines.push(`keep    ${k.image.imageId}  ${k.image.name}  (${k.reasons.join(', ')})`);
  if (dryRun) {
    for (const image of result.plan.remove) lines.push(`would remove  ${image.imageId}  ${image.name}`);
  }
  for (const r of result.removed) {
    const snaps = r.deregister.snapshots.map((s) => `${s.snapshotId} ${s.result}`).join(', ') || 'no snapshot';
    lines.push(
      `removed ${r.image.imageId}  ${r.image.name}  snapshots: ${snaps}; object: ${r.object === null ? 'none' : r.object}`,
    );
  }
  const count = dryRun ? result.plan.remove.length : result.removed.length;
  lines.push(
    `${dryRun ? 'would remove' : 'removed'} ${count} image${count === 1 ? '' : 's'}, kept ${result.plan.keep.length}`,
  );
  return lines.join('\n');
}
