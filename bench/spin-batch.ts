// The benchmark's SPIN batch (docs/benchmarks.md, Workloads): B pairs → 2B sequences
// [real; generated] of random tokens, prompt + response, labels −100 on the prompts; and the
// process's peak RSS, which is why each configuration runs in its own process.
import { readFileSync } from "node:fs";

import { type Tensor, arange, ones, randn, scope } from "../lib/index.js";

export interface SpinBenchBatch {
  ids: Tensor;
  attentionMask: Tensor;
  labels: Tensor;
}

export function spinBenchBatch(vocab: number, rows: number, prompt: number, response: number): SpinBenchBatch {
  const length = prompt + response;
  const ids = scope(() => randn([rows, length]).abs().mul(vocab / 4).floor().clamp(0, vocab - 1).to("int64"));
  const attentionMask = ones([rows, length], { dtype: "int64" });
  const labels = scope(() => {
    const isResponse = arange(0, length).ge(prompt).unsqueeze(0).expand([rows, length]);
    return isResponse.to("int64").mul(ids).add(isResponse.logicalNot().to("int64").mul(-100));
  });
  return { ids, attentionMask, labels };
}

/** This process's peak resident memory (VmHWM). */
export function peakRssBytes(): number {
  const status = readFileSync("/proc/self/status", "utf8");
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
}
