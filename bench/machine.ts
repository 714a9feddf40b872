// The machine's limits measured through the addon: float32 matmul rate and memory
// bandwidth. Later benchmarks report their figures as ratios to these.
import { randn, zeros } from "../lib/index.js";
import type { Row } from "./report.js";
import { time } from "./timing.js";

export interface MachineLimits {
  /** Best float32 matmul GFLOP/s over the measured sizes. */
  matmulGflops: number;
  /** Copy bandwidth, bytes read + written per second, in GB/s. */
  bandwidthGBs: number;
  rows: Row[];
}

async function matmulRow(n: number): Promise<Row> {
  const a = randn([n, n]);
  const b = randn([n, n]);
  const t = await time(() => a.matmul(b).dispose(), n >= 2048 ? 5 : 11);
  a.dispose();
  b.dispose();
  return { name: `matmul ${n}x${n} f32`, seconds: t.median, "GFLOP/s": (2 * n ** 3) / t.median / 1e9 };
}

async function bandwidthRow(mib: number): Promise<Row> {
  const elements = (mib * 2 ** 20) / 4;
  const source = randn([elements]);
  const target = zeros([elements]); // written once before timing, so no page faults are timed
  target.copyFrom(source);
  const t = await time(() => target.copyFrom(source), 9);
  source.dispose();
  target.dispose();
  const bytes = 2 * mib * 2 ** 20; // read + write
  return { name: `copy ${mib} MiB f32`, seconds: t.median, "GB/s": bytes / t.median / 1e9 };
}

export async function measureMachine(): Promise<MachineLimits> {
  const rows: Row[] = [];
  for (const n of [512, 1024, 2048]) rows.push(await matmulRow(n));
  rows.push(await bandwidthRow(512));
  const matmulGflops = Math.max(...rows.map((r) => Number(r["GFLOP/s"] ?? 0)));
  const bandwidthGBs = Number(rows.at(-1)!["GB/s"]);
  return { matmulGflops, bandwidthGBs, rows };
}
