// Data parallelism over c10d/Gloo on loopback: collectives for 2 and 3 ranks, a SPIN run on
// 2 ranks with per-rank batch b equal to 1 rank with batch 2b, and a dead rank failing the
// job within the timeout. Workers are real processes started by `spin-native launch`.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { writeCharModel } from "./tiny-char-model.js";
import { TINY_TOKENIZER_CONFIG, tinyTokenizerJson } from "./tiny-tokenizer.js";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const CLI = path.join(REPO, "dist", "lib", "cli.js");
const WORKER = path.join(REPO, "test", "dist-worker.mjs");
const root = mkdtempSync(path.join(os.tmpdir(), "spin-dist-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

beforeAll(() => {
  execFileSync(path.join(REPO, "node_modules", ".bin", "tsc"), ["-p", "tsconfig.build.json"], { cwd: REPO, stdio: "pipe" });
}, 120_000);

let nextPort = 20000 + Math.floor(Math.random() * 30000);

function launch(ranks: number, args: string[], timeoutMs = 90_000) {
  const port = nextPort++;
  return spawnSync(process.execPath, [CLI, "launch", `--nproc-per-node=${ranks}`, `--master-port=${port}`, "--", process.execPath, WORKER, ...args], {
    encoding: "utf8",
    timeout: timeoutMs,
    env: { ...process.env, OMP_NUM_THREADS: "1" },
  });
}

const read = (dir: string, name: string, rank: number) => JSON.parse(readFileSync(path.join(dir, `${name}-rank${rank}.json`), "utf8"));

describe.each([2, 3])("collectives on %i ranks", (ranks) => {
  test("allReduce sum/avg/max, broadcast, allGather, barrier", () => {
    const dir = mkdtempSync(path.join(root, "coll-"));
    const run = launch(ranks, ["collectives", dir]);
    expect(run.status, run.stderr + run.stdout).toBe(0);
    const n = ranks;
    for (let rank = 0; rank < n; rank++) {
      const r = read(dir, "collectives", rank);
      expect(r.sum).toEqual([(n * (n + 1)) / 2, (10 * n * (n + 1)) / 2]);
      expect(r.avg).toBeCloseTo((n + 1) / 2, 12);
      expect(r.max).toBe(Math.max(...Array.from({ length: n }, (_, k) => (k * 7) % 5)));
      expect(r.broadcast).toEqual([42, 1]);
      expect(r.gathered).toEqual(Array.from({ length: n }, (_, k) => [k, k * k]));
    }
    // Output is prefixed by rank.
    expect(run.stdout + run.stderr).not.toContain("[launch]");
  });
});

test("SPIN on 2 ranks with batch b equals 1 rank with batch 2b", async () => {
  const dir = mkdtempSync(path.join(root, "train-"));
  await writeCharModel(path.join(dir, "model"));
  writeFileSync(path.join(dir, "model", "tokenizer.json"), JSON.stringify(tinyTokenizerJson()));
  writeFileSync(path.join(dir, "model", "tokenizer_config.json"), JSON.stringify(TINY_TOKENIZER_CONFIG));
  const two = launch(2, ["train", dir, "2"]);
  expect(two.status, two.stderr + two.stdout).toBe(0);
  const one = spawnSync(process.execPath, [WORKER, "train", dir, "4"], { encoding: "utf8", env: { ...process.env, OMP_NUM_THREADS: "1", WORLD_SIZE: "1" } });
  expect(one.status, one.stderr).toBe(0);
  const single = read(dir, "train", 0); // the 1-rank run wrote rank 0 last; rank 1 is the 2-rank run
  const rank1 = read(dir, "train", 1);
  let worst = 0;
  for (const [name, values] of Object.entries(single.params as Record<string, number[]>)) {
    const other = (rank1.params as Record<string, number[]>)[name]!;
    values.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - other[i]!) / Math.max(1e-3, Math.abs(v)))));
  }
  expect(worst).toBeLessThan(1e-6);
  expect(single.losses.length).toBe(4);
  rank1.losses.forEach((loss: number, i: number) => expect(Math.abs(loss - single.losses[i]) / Math.abs(single.losses[i])).toBeLessThan(1e-6));
  // The updates moved the parameters (the comparison is not vacuous).
  expect(single.losses[0]).not.toBeCloseTo(single.losses[3], 6);
}, 120_000);

test("generation on 2 ranks equals generation on 1 rank", async () => {
  const dir = mkdtempSync(path.join(root, "gen-"));
  await writeCharModel(path.join(dir, "model"));
  writeFileSync(path.join(dir, "model", "tokenizer.json"), JSON.stringify(tinyTokenizerJson()));
  writeFileSync(path.join(dir, "model", "tokenizer_config.json"), JSON.stringify(TINY_TOKENIZER_CONFIG));
  const two = launch(2, ["generate", dir]);
  expect(two.status, two.stderr + two.stdout).toBe(0);
  const one = spawnSync(process.execPath, [WORKER, "generate", dir], { encoding: "utf8", env: { ...process.env, OMP_NUM_THREADS: "1", WORLD_SIZE: "1" } });
  expect(one.status, one.stderr).toBe(0);
  const merged = readFileSync(path.join(dir, "gen-2", "train.jsonl"), "utf8");
  const single = readFileSync(path.join(dir, "gen-1", "train", "train-0.jsonl"), "utf8");
  expect(merged.split("\n").filter(Boolean)).toHaveLength(7);
  expect(merged).toBe(single);
}, 120_000);

test("a rank killed with SIGKILL fails the job within the timeout, naming the rank", () => {
  const dir = mkdtempSync(path.join(root, "die-"));
  const started = Date.now();
  const run = launch(2, ["die", dir], 60_000);
  const seconds = (Date.now() - started) / 1000;
  expect(run.status).not.toBe(0);
  expect(run.stdout + run.stderr).toMatch(/rank 1 failed \(signal SIGKILL\)/);
  expect(seconds).toBeLessThan(45);
  if (existsSync(path.join(dir, "die-rank0.json"))) {
    const r = read(dir, "die", 0);
    expect(r.code).toBe("IO");
  }
}, 90_000);
