// Checks a file of appended lines `w<id> <seq> <pad> end`: which are missing, which torn.
export interface LineCheck {
  total: number;
  torn: number;
  lost: number;
  duplicated: number;
}

export function checkLines(text: string, workers: string[], perWorker: number): LineCheck {
  const lines = text.split('\n').filter((l) => l !== '');
  const seen = new Map<string, number>();
  let torn = 0;
  for (const line of lines) {
    const m = /^w(\S+) (\d+) x{80} end$/.exec(line);
    if (m === null) {
      torn++;
      continue;
    }
    const key = `${m[1]}-${m[2]}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  let lost = 0;
  let duplicated = 0;
  for (const w of workers) {
    for (let i = 0; i < perWorker; i++) {
      const n = seen.get(`${w}-${i}`) ?? 0;
      if (n === 0) lost++;
      if (n > 1) duplicated += n - 1;
    }
  }
  return { total: lines.length, torn, lost, duplicated };
}
