// Injectable time for the cloud layer. The AWS adapter polls SSM on it; the simulated cloud
// derives every state (booting, importing, running a command) from `now()` and waits with
// `sleep()`, so one simulated world can run on real time, on scaled time (a sandbox a human
// can watch) or on a manual clock that a test moves by hand (milliseconds of wall time).
import { setTimeout as delay } from 'node:timers/promises';

export interface Clock {
  /** Milliseconds since the epoch, as `Date.now()`. */
  now(): number;
  /** Resolves after `ms` of this clock's time; rejects with an AbortError when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const realClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) => delay(Math.max(0, ms), undefined, { signal }),
};

/** Real time sped up `speed` times: at 60, a 20-minute AMI import takes 20 s of wall time. */
export function scaledClock(speed: number, start = Date.now()): Clock {
  if (!(speed > 0)) throw new RangeError(`clock speed must be positive, got ${speed}`);
  // The monotonic clock, to the microsecond: at 1000× a millisecond of Date.now() is a
  // simulated second, and a timer may fire up to a millisecond early by it (libuv measures
  // from its cached loop time), so a sleep ran short by up to a simulated second.
  const wallStart = performance.now();
  const now = () => start + (performance.now() - wallStart) * speed;
  return {
    now,
    async sleep(ms, signal) {
      const until = now() + Math.max(0, ms);
      do await delay((until - now()) / speed, undefined, { signal });
      while (now() < until);
    },
  };
}

interface Sleeper {
  at: number;
  seq: number;
  resolve: () => void;
}

/**
 * A clock that moves only when told. `advance(ms)` wakes every sleeper due within the step in
 * time order, letting each one's continuation run before the next, so a sleeper that sleeps
 * again inside the step wakes within it too. With `auto: true` it is a discrete-event clock:
 * whenever sleepers are waiting and the event loop has nothing else to do this turn, time jumps
 * to the earliest one, so simulated minutes pass in microseconds of wall time.
 */
export class ManualClock implements Clock {
  private current: number;
  private sleepers: Sleeper[] = [];
  private seq = 0;
  private readonly auto: boolean;
  private jumpQueued = false;

  constructor(options: { start?: number; auto?: boolean } = {}) {
    this.current = options.start ?? Date.UTC(2026, 0, 1);
    this.auto = options.auto ?? false;
  }

  now(): number {
    return this.current;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    return new Promise<void>((resolve, reject) => {
      const sleeper: Sleeper = { at: this.current + Math.max(0, ms), seq: this.seq++, resolve };
      const onAbort = () => {
        this.sleepers = this.sleepers.filter((s) => s !== sleeper);
        reject(signal?.reason);
      };
      sleeper.resolve = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.sleepers.push(sleeper);
      if (this.auto) this.queueJump();
    });
  }

  /** Moves time forward by `ms`, waking sleepers due on the way in order. */
  async advance(ms: number): Promise<void> {
    const target = this.current + Math.max(0, ms);
    for (;;) {
      const next = this.earliest();
      if (next === undefined || next.at > target) break;
      this.wake(next);
      // Let the woken code run (and maybe sleep again) before looking for the next sleeper.
      await turn();
    }
    this.current = target;
  }

  private earliest(): Sleeper | undefined {
    let best: Sleeper | undefined;
    for (const s of this.sleepers) {
      if (best === undefined || s.at < best.at || (s.at === best.at && s.seq < best.seq)) best = s;
    }
    return best;
  }

  private wake(sleeper: Sleeper): void {
    this.sleepers = this.sleepers.filter((s) => s !== sleeper);
    this.current = Math.max(this.current, sleeper.at);
    sleeper.resolve();
  }

  private queueJump(): void {
    if (this.jumpQueued) return;
    this.jumpQueued = true;
    // setImmediate runs after this turn's I/O callbacks and microtasks: every sleep started
    // in the same turn is registered before time jumps, so parallel sleeps overlap.
    setImmediate(() => {
      this.jumpQueued = false;
      const next = this.earliest();
      if (next === undefined) return;
      this.wake(next);
      if (this.sleepers.length > 0) this.queueJump();
    });
  }
}

function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
