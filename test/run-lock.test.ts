// One writer per output folder (lib/core/run-lock.ts): a second writer — another process or
// another call in this one — is refused naming the holder; a stale lock (its process gone)
// is taken over and reported; data-parallel jobs lock once, on rank 0.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { CausalLM, SelfPlayGenerator, SpinNativeError, SpinTrainer, type Tokenizer, setNumThreads } from "../lib/index.js";
import { LOCK_FILE, RunLock } from "../lib/core/run-lock.js";
import { ensureDist, runCli, sftRows, spawnNode, writeTinyCheckpoint } from "./cli-helpers.js";
import { removeRoot, tempRoot } from "./fixtures.js";
import { rejection } from "./helpers.js";
import { pairOf, tinyTokenizer } from "./tiny-tokenizer.js";

const root = tempRoot("run-lock");
let modelDir: string;
let tok: Tokenizer;
beforeAll(async () => {
  setNumThreads(1);
  modelDir = path.join(root, "model");
  await writeTinyCheckpoint(modelDir);
  tok = tinyTokenizer();
  ensureDist();
}, 180_000);
afterAll(() => removeRoot(root));

/** The pid of a process that has exited. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ["-e", "console.log(process.pid)"], { encoding: "utf8" });
  return Number(child.stdout.trim());
}

describe("RunLock", () => {
  test("a second acquire of a held folder is refused naming the holder; release frees it", async () => {
    const dir = path.join(root, "unit");
    const first = await RunLock.acquire(dir, "first run");
    const error = await rejection<SpinNativeError>(RunLock.acquire(dir, "second run"));
    expect(error).toBeInstanceOf(SpinNativeError);
    expect(error.code).toBe("LOCKED");
    expect(error.message).toContain(`pid ${process.pid} on ${os.hostname()}`);
    expect(error.message).toContain("first run");
    first.release();
    expect(existsSync(path.join(dir, LOCK_FILE))).toBe(false);
    (await RunLock.acquire(dir, "third run")).release();
  });

  test("a stale lock (its process gone) is taken over and reported; a lock of a live process on another host is not", async () => {
    const dir = path.join(root, "stale");
    mkdirSync(dir, { recursive: true });
    const stale = { pid: deadPid(), host: os.hostname(), started: "2026-01-01T00:00:00.000Z", command: "crashed run", processStart: null };
    writeFileSync(path.join(dir, LOCK_FILE), JSON.stringify(stale));
    const warnings: string[] = [];
    const lock = await RunLock.acquire(dir, "new run", { onTakeover: (m) => warnings.push(m) });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(`pid ${stale.pid}`);
    expect(warnings[0]).toContain("crashed run");
    expect(JSON.parse(readFileSync(path.join(dir, LOCK_FILE), "utf8")).pid).toBe(process.pid);
    lock.release();
    // A holder on another machine cannot be checked: refused, with the way out named.
    writeFileSync(path.join(dir, LOCK_FILE), JSON.stringify({ ...stale, host: "elsewhere" }));
    const error = await rejection<SpinNativeError>(RunLock.acquire(dir, "new run"));
    expect(error.message).toMatch(/another host.*remove the lock file/);
    expect(readdirSync(dir).filter((n) => n.startsWith(LOCK_FILE))).toEqual([LOCK_FILE]);
  });

  test("a folder that cannot be created fails once with the OS's reason", async () => {
    const file = path.join(root, "a-file");
    writeFileSync(file, "x");
    const error = await rejection<SpinNativeError>(RunLock.acquire(path.join(file, "out"), "run"));
    expect(error.code).toBe("IO");
    expect(error.message).toMatch(/cannot create the output folder .*ENOTDIR/);
  });
});

describe("two writers of one output folder", () => {
  test("two SpinTrainer.train calls in one process (two models): one trains, the other is refused naming it", async () => {
    const [a, b] = await Promise.all([CausalLM.load(modelDir), CausalLM.load(modelDir)]);
    const outputDir = path.join(root, "train-twice");
    const config = { outputDir, learningRate: 1e-3, perDeviceTrainBatchSize: 2, maxSteps: 3, saveStrategy: "no" as const };
    const rows = [pairOf("hi", "ab", "cd"), pairOf("yo", "abc", "x")];
    const first = new SpinTrainer({ model: a, tokenizer: tok, config }).train(rows);
    const second = new SpinTrainer({ model: b, tokenizer: tok, config }).train(rows);
    // Whichever takes the folder first trains; the other is refused.
    const results = await Promise.allSettled([first, second]);
    expect(results.map((r) => r.status).sort()).toEqual(["fulfilled", "rejected"]);
    const error = (results.find((r) => r.status === "rejected") as PromiseRejectedResult).reason as SpinNativeError;
    expect(error.code).toBe("LOCKED");
    expect(error.message).toContain("SpinTrainer.train");
    expect(existsSync(path.join(outputDir, LOCK_FILE))).toBe(false);
    a.dispose();
    b.dispose();
  });

  test("two generators into one folder at once: one writes, the other is refused; the file has each row once", async () => {
    const model = await CausalLM.load(modelDir);
    const rows = sftRows(6);
    const outDir = path.join(root, "generate-twice");
    const run = () => new SelfPlayGenerator({ model, tokenizer: tok, options: { batchSize: 2, maxNewTokens: 4 } }).run(rows, outDir);
    const results = await Promise.allSettled([run(), run()]);
    expect(results.map((r) => r.status).sort()).toEqual(["fulfilled", "rejected"]);
    const lines = readFileSync(path.join(outDir, "train", "train-0.jsonl"), "utf8").trim().split("\n");
    expect(lines).toHaveLength(6);
    model.dispose();
  });

  test("two fractions of one folder run side by side (one lock per fraction)", async () => {
    const model = await CausalLM.load(modelDir);
    const rows = sftRows(6);
    const outDir = path.join(root, "generate-fractions");
    const run = (dataFrac: number) => new SelfPlayGenerator({ model, tokenizer: tok, options: { batchSize: 2, maxNewTokens: 4, fracLen: 3, dataFrac } }).run(rows, outDir);
    const [a, b] = await Promise.all([run(0), run(1)]);
    expect([a.rows, b.rows]).toEqual([3, 3]);
    model.dispose();
  });

  test("two `spin-native generate` processes on one output_dir: the second exits 1 naming the first, which goes on", async () => {
    const input = path.join(root, "gen-input");
    mkdirSync(input, { recursive: true });
    const n = 200;
    writeFileSync(path.join(input, "train.jsonl"), sftRows(n).map((r) => JSON.stringify(r)).join("\n") + "\n");
    const out = mkdtempSync(path.join(root, "gen-out-")); // its own folder on a retry too
    const args = ["generate", `--model_name_or_path=${modelDir}`, `--input=${input}`, `--output_dir=${out}`, "--batch_size=1", "--max_new_tokens=16"];
    const first = spawnNode(path.join("dist", "lib", "cli.js"), args);
    // Once the first holds the folder, pause it, so that it cannot finish (and release the
    // folder) before the second has started on a fast machine.
    for (let i = 0; i < 400 && !existsSync(path.join(out, "train", ".spin-native.train-0.lock")); i++) await new Promise((r) => setTimeout(r, 25));
    first.process.kill("SIGSTOP");
    const second = await runCli(args);
    first.process.kill("SIGCONT");
    expect(second.code, second.stderr).toBe(1);
    expect(second.stderr).toMatch(/is in use by pid \d+ .*generate/);
    // The first still holds the folder and writes; stop it (as Ctrl-C) and check its output.
    first.process.kill("SIGINT");
    const stopped = await first.exit;
    expect([0, 130]).toContain(stopped.code);
    // A re-run completes the folder: every prompt once (two writers would have appended twice).
    const resumed = await runCli(args);
    expect(resumed.code, resumed.stderr).toBe(0);
    const lines = readFileSync(path.join(out, "train", "train-0.jsonl"), "utf8").trim().split("\n");
    expect(lines).toHaveLength(n);
  }, 120_000);
});
