// The bench table: each row is the project's figure beside the bare dependency doing the
// same work in the same run, their ratio, the budget from DESIGN.md and ok/over.
export interface Row {
  what: string;
  project: string;
  floor: string;
  /** project / floor, where lower is better; null when there is no floor. */
  ratio: number | null;
  budget: string;
  ok: boolean | null;
}

export type Bench = () => Promise<Row[]>;

export function median(values: number[]): number {
  return percentile(values, 50);
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] as number;
}

export function ms(value: number): string {
  return value < 10 ? `${value.toFixed(2)} ms` : `${value.toFixed(0)} ms`;
}

export function render(rows: Row[]): string {
  const header = ['what', 'project', 'floor (same run)', 'ratio', 'budget', 'ok'];
  const body = rows.map((r) => [
    r.what,
    r.project,
    r.floor,
    r.ratio === null ? '—' : `${r.ratio.toFixed(2)}×`,
    r.budget,
    r.ok === null ? '—' : r.ok ? 'ok' : 'over',
  ]);
  const lines = [header, header.map(() => '---'), ...body].map((cells) => `| ${cells.join(' | ')} |`);
  return `${lines.join('\n')}\n`;
}
