// What the data-parallel tests share: the compiled CLI and the worker (test/dist-worker.mjs),
// started as real processes by `spin-native launch`, and the files the workers write.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { afterAll, beforeAll } from "vitest";

import { writeCharModel } from "./tiny-char-model.js";
import { TINY_TOKENIZER_CONFIG, tinyTokenizerJson } from "./tiny-tokenizer.js";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const CLI = path.join(REPO, "dist", "lib", "cli.js");
export const WORKER = path.join(REPO, "test", "dist-worker.mjs");

/** A temporary folder for this test file, removed after it; dist/ is compiled before its tests. */
export function distTestRoot(prefix: string): string {
  const root = mkdtempSync(path.join(os.tmpdir(), prefix));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  beforeAll(() => {
    execFileSync(path.join(REPO, "node_modules", ".bin", "tsc"), ["-p", "tsconfig.build.json"], { cwd: REPO, stdio: "pipe" });
  }, 120_000);
  return root;
}

let nextPort = 20000 + Math.floor(Math.random() * 30000);

/** A port for the next job's rendezvous. */
export function freshPort(): number {
  return nextPort++;
}

/** The worker on `ranks` ranks under `spin-native launch`. */
export function launch(ranks: number, args: string[], timeoutMs = 90_000, env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [CLI, "launch", `--nproc-per-node=${ranks}`, `--master-port=${freshPort()}`, "--", process.execPath, WORKER, ...args], {
    encoding: "utf8",
    timeout: timeoutMs,
    env: { ...process.env, OMP_NUM_THREADS: "1", ...env },
  });
}

/** The worker as a single process (no launcher, WORLD_SIZE=1). */
export function runAlone(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [WORKER, ...args], { encoding: "utf8", timeout: 90_000, env: { ...process.env, OMP_NUM_THREADS: "1", WORLD_SIZE: "1", ...env } });
}

/** A tiny llama checkpoint with the char tokenizer's files, in `dir`. */
export async function writeCharCheckpoint(dir: string): Promise<void> {
  await writeCharModel(dir);
  writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(tinyTokenizerJson()));
  writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify(TINY_TOKENIZER_CONFIG));
}

/** What a worker's rank wrote as `<name>-rank<rank>.json` (JSON.parse's untyped value). */
export const read = (dir: string, name: string, rank: number) => JSON.parse(readFileSync(path.join(dir, `${name}-rank${rank}.json`), "utf8"));
