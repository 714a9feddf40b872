// Repeat-and-take-the-median timing: whole-step noise here is about ±20% run to run.
import { performance } from "node:perf_hooks";

export interface Timing {
  /** Median seconds per call. */
  median: number;
  min: number;
  repeats: number;
}

/** Runs `fn` `warmup` times untimed, then `repeats` times timed. */
export async function time(fn: () => unknown | Promise<unknown>, repeats = 7, warmup = 2): Promise<Timing> {
  for (let i = 0; i < warmup; i++) await fn();
  const seconds: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const start = performance.now();
    await fn();
    seconds.push((performance.now() - start) / 1000);
  }
  seconds.sort((a, b) => a - b);
  return { median: seconds[Math.floor(seconds.length / 2)]!, min: seconds[0]!, repeats };
}
