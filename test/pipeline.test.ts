// The end-to-end test of the SPIN loop through the command line: `spin-native iterate
// config.yaml` (the compiled CLI in a child process) for 2 iterations on a tiny checkpoint
// (the char-level tokenizer + a tiny llama of its vocabulary, as a Hugging Face folder) and a
// parquet SFT dataset in the original schema (plus half of a small jsonl one, to check
// dataset_mixer fractions). One run goes uninterrupted; another is killed with a real SIGKILL
// twice — once as iteration 1 starts generating, once in the middle of iteration 1's training
// after a step checkpoint — and re-run with the same command each time. The resumed run must
// end with the same bytes: every iteration's generated data, the opponent log-probs, θ1 and
// the final model θ2 (iter1/model/model.safetensors). Then the same command with
// --iterations=3 continues the finished run by one iteration.
import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { type SpinRow, readSpinRows, writeParquet } from "../lib/index.js";
import type { RunState } from "../lib/run/pipeline.js";
import { CLI, type Exit, ensureDist, sftRows, spawnNode, writeTinyCheckpoint } from "./cli-helpers.js";
import { removeRoot, tempRoot } from "./fixtures.js";
import { assistant, tinyTokenizer, user } from "./tiny-tokenizer.js";

const root = tempRoot("pipeline");
const base = path.join(root, "base");
const sft = path.join(root, "sft.parquet");
const extra = path.join(root, "extra.jsonl");
const configFile = path.join(root, "config.yaml");
const plainRun = path.join(root, "run-plain");
const killedRun = path.join(root, "run-killed");

// 8 more prompts in {prompt, response} rows, of which dataset_mixer takes the first half.
const EXTRA = ["alpha", "bravo", "delta", "gamma", "omega", "sigma", "kappa", "theta"].map((w) => ({ prompt: `spell ${w}`, response: [...w].join(" ") }));
const PROMPTS = 24 + EXTRA.length / 2;
// 28 prompts, batch 4, 2 epochs: iteration 0 trains 14 updates on its 28 pairs, iteration 1
// 28 updates on 56 (its own + iteration 0's); a checkpoint every 3 updates.
const STEPS = [14, 28];
const CONFIG = `# spin-native iterate, in the original SPIN config.yaml vocabulary
model_name_or_path: ${base}
dataset_mixer:
  ${sft}: 1.0
  ${extra}: 0.5
output_dir: ${plainRun}
iterations: 2
threads: 1
# generation
batch_size: 8
max_new_tokens: 4
# training
learning_rate: 1.0e-3
beta: 0.5
optim: adamw_torch
lr_scheduler_type: linear
warmup_ratio: 0.1
num_train_epochs: 2
per_device_train_batch_size: 4
gradient_accumulation_steps: 1
max_length: 64
max_prompt_length: 48
save_strategy: steps
save_steps: 3
logging_steps: 1
seed: 42
`;

beforeAll(async () => {
  ensureDist();
  await writeTinyCheckpoint(base);
  expect(await writeParquet(sft, sftRows(24))).toBe(24);
  writeFileSync(extra, EXTRA.map((r) => JSON.stringify(r)).join("\n") + "\n");
  writeFileSync(configFile, CONFIG);
}, 120_000);
afterAll(() => removeRoot(root));

/** Every file under `dir` (relative paths, sorted). */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, entry.name);
      if (entry.isDirectory()) walk(p);
      else out.push(path.relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

const bytes = (p: string) => readFileSync(p);
const runState = (runDir: string) => JSON.parse(readFileSync(path.join(runDir, "run.json"), "utf8")) as RunState;
const stepOf = (line: string) => Number(/^\[step (\d+) /.exec(line)?.[1] ?? NaN);
const checkpointsIn = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((n) => /^checkpoint-\d+$/.test(n)) : []);

/** `spin-native iterate config.yaml [--output_dir=…]`; `killWhen` decides, line by line, when to SIGKILL it. */
function iterate(runDir: string, killWhen?: (line: string, lines: string[]) => boolean, overrides: string[] = []) {
  const args = ["iterate", configFile, ...(runDir === plainRun ? [] : [`--output_dir=${runDir}`]), ...overrides];
  let killed = false;
  const child = spawnNode(CLI, args, (line, process) => {
    if (!killed && killWhen?.(line, child.lines)) {
      killed = true;
      process.kill("SIGKILL");
    }
  });
  return child;
}

const describeExit = (exit: Exit) => `code ${exit.code}, signal ${exit.signal}\nstdout:\n${exit.stdout}\nstderr:\n${exit.stderr}`;

describe("spin-native iterate: 2 iterations, SIGKILL and resume", () => {
  let plain: Exit;
  let resumedLines: string[];
  let killedAtStep = -1;

  test("an uninterrupted run", async () => {
    plain = await iterate(plainRun).exit;
    expect(plain.code, describeExit(plain)).toBe(0);
    expect(plain.stdout).toContain(`done: ${path.join(plainRun, "iter1", "model")}`);
  });

  test("killed as iteration 1 starts generating, then in iteration 1's training after a checkpoint; each re-run resumes", async () => {
    // Kill 1: the moment iteration 1's generation starts (θ1 is saved; generating or training).
    const first = iterate(killedRun, (line) => line.startsWith("iteration 1: generating"));
    const firstExit = await first.exit;
    expect(firstExit.signal, describeExit(firstExit)).toBe("SIGKILL");
    expect(existsSync(path.join(killedRun, "iter0", "model", "model.safetensors"))).toBe(true);
    expect(runState(killedRun).iteration[0]?.train).toBeDefined();
    expect(runState(killedRun).iteration[1]?.train).toBeUndefined();

    // Kill 2: iteration 1 training, once update ≥ 5 is logged (checkpoint-3 is on disk) — far from its 28 updates.
    const trainDir = path.join(killedRun, "iter1", "train");
    const second = iterate(killedRun, (line, lines) => {
      if (!lines.some((l) => l.startsWith("iteration 1: training"))) return false;
      const step = stepOf(line);
      if (!(step >= 5) || checkpointsIn(trainDir).length === 0) return false;
      killedAtStep = step;
      return true;
    });
    const secondExit = await second.exit;
    expect(secondExit.signal, describeExit(secondExit)).toBe("SIGKILL");
    expect(killedAtStep).toBeGreaterThanOrEqual(5);
    expect(killedAtStep, "killed mid-training, not at its end").toBeLessThan(STEPS[1]!);
    expect(second.lines.some((l) => l.startsWith("iteration 0:")), "iteration 0 is not redone").toBe(false);
    expect(existsSync(path.join(killedRun, "iter1", "model")), "θ2 not saved yet").toBe(false);
    const state = runState(killedRun);
    expect(state.iteration[1]?.generate?.rows).toBe(PROMPTS);
    expect(state.iteration[1]?.train).toBeUndefined();
    const checkpoints = checkpointsIn(trainDir).map((n) => Number(n.slice("checkpoint-".length)));
    expect(Math.max(...checkpoints)).toBeGreaterThanOrEqual(3);

    // Re-run: only iteration 1's training is left; it resumes after its newest checkpoint.
    const third = iterate(killedRun);
    const thirdExit = await third.exit;
    expect(thirdExit.code, describeExit(thirdExit)).toBe(0);
    resumedLines = third.lines;
    expect(resumedLines.some((l) => l.startsWith("iteration 0:") || l.startsWith("iteration 1: generating")), "finished stages are not redone").toBe(false);
    expect(resumedLines).toContain(`iteration 1: training on ${2 * PROMPTS} pairs from ${path.join(killedRun, "iter0", "model")}`);
    const steps = resumedLines.map(stepOf).filter((s) => !Number.isNaN(s));
    expect(steps[0], "the resumed training starts right after a checkpoint").toBe(Math.max(...checkpoints) + 1);
    expect(steps.at(-1)).toBe(STEPS[1]);
    expect(resumedLines.at(-1)).toBe(`done: ${path.join(killedRun, "iter1", "model")}`);
  });

  test("the resumed run's final model and every iteration's data equal the uninterrupted run's, byte for byte", () => {
    for (const t of [0, 1]) {
      const plainData = path.join(plainRun, `iter${t}`, "data");
      const killedData = path.join(killedRun, `iter${t}`, "data");
      const files = filesUnder(plainData);
      expect(files).toEqual(["train/train-0.jsonl", "train/train-0.meta.json"]);
      expect(filesUnder(killedData)).toEqual(files);
      for (const f of files) expect(bytes(path.join(killedData, f)).equals(bytes(path.join(plainData, f))), `iter${t}/data/${f}`).toBe(true);
      const opponent = path.join(`iter${t}`, "train", "opponent_logps.json");
      expect(bytes(path.join(killedRun, opponent)).equals(bytes(path.join(plainRun, opponent))), opponent).toBe(true);
    }
    for (const model of ["iter0/model/model.safetensors", "iter1/model/model.safetensors"]) {
      expect(bytes(path.join(killedRun, model)).equals(bytes(path.join(plainRun, model))), model).toBe(true);
    }
    // The metrics log was cut back to the checkpoint and continued: the same lines (tokens/s aside).
    const metrics = (runDir: string) =>
      readFileSync(path.join(runDir, "iter1", "metrics.jsonl"), "utf8")
        .trimEnd()
        .split("\n")
        .map((l) => {
          const { "tokens/s": _, ...rest } = JSON.parse(l) as Record<string, number>;
          return rest;
        });
    expect(metrics(killedRun)).toEqual(metrics(plainRun));
    // The base model differs from θ1 and θ1 from θ2: training did move the weights.
    expect(bytes(path.join(plainRun, "iter0/model/model.safetensors")).equals(bytes(path.join(base, "model.safetensors")))).toBe(false);
    expect(bytes(path.join(plainRun, "iter1/model/model.safetensors")).equals(bytes(path.join(plainRun, "iter0/model/model.safetensors")))).toBe(false);
  });

  test("run.json records every stage, equal in both runs (timings aside)", () => {
    const strip = (state: RunState) => ({
      ...state,
      baseModel: state.baseModel,
      iteration: state.iteration.map((r) => ({
        generate: { rows: r.generate?.rows },
        train: { steps: r.train?.steps, rows: r.train?.rows, metrics: Object.fromEntries(Object.entries(r.train?.metrics ?? {}).filter(([k]) => k !== "tokens/s")) },
      })),
    });
    const state = runState(plainRun);
    expect(state.version).toBe(1);
    expect(state.baseModel).toBe(base);
    expect(state.iterations).toBe(2);
    expect(state.iteration).toHaveLength(2);
    expect(state.iteration[0]).toMatchObject({ generate: { rows: PROMPTS }, train: { steps: STEPS[0], rows: PROMPTS } });
    expect(state.iteration[1]).toMatchObject({ generate: { rows: PROMPTS }, train: { steps: STEPS[1], rows: 2 * PROMPTS } });
    for (const [t, r] of state.iteration.entries()) {
      // identicalPairs, recounted from the rows as written: the generated answer's text equals the real one's.
      const written = readFileSync(path.join(plainRun, `iter${t}`, "data", "train", "train-0.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as SpinRow);
      const same = written.filter((row) => row.generated.at(-1)!.content === row.real.at(-1)!.content).length;
      expect(r.generate!.identicalPairs).toBe(same / PROMPTS);
      expect(r.generate!.eosRate).toBeGreaterThanOrEqual(0);
      expect(r.generate!.meanGeneratedTokens).toBeGreaterThan(0);
      expect(r.generate!.meanGeneratedTokens).toBeLessThanOrEqual(4);
      expect(r.train!.metrics.loss).toBeGreaterThan(0);
      expect(r.eval).toBeUndefined(); // no evaluate callback from the CLI
    }
    expect(state.baseEval).toBeUndefined();
    expect(strip(runState(killedRun))).toEqual(strip(state));
  });

  test("the run folder layout: iter<t>/{data, model, metrics.jsonl}, no step checkpoints left, report.html", () => {
    for (const runDir of [plainRun, killedRun]) {
      const entries = readdirSync(runDir).sort();
      expect(entries).toEqual(["iter0", "iter1", "report.html", "run.json"]);
      for (const t of [0, 1]) {
        const dir = path.join(runDir, `iter${t}`);
        expect(readdirSync(dir).sort()).toEqual(["data", "metrics.jsonl", "model", "train"]);
        const model = readdirSync(path.join(dir, "model")).sort();
        expect(model).toEqual(expect.arrayContaining(["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]));
        expect(checkpointsIn(path.join(dir, "train")), "step checkpoints are removed once θt+1 is saved").toEqual([]);
        expect(readdirSync(path.join(dir, "train")).filter((n) => n.includes(".tmp-")), "no temp leftovers in a finished stage").toEqual([]);
        const lines = readFileSync(path.join(dir, "metrics.jsonl"), "utf8").trimEnd().split("\n");
        expect(lines).toHaveLength(STEPS[t]!);
        expect(lines.map((l) => (JSON.parse(l) as { step: number }).step)).toEqual(Array.from({ length: STEPS[t]! }, (_, i) => i + 1));
        expect(JSON.parse(lines.at(-1)!)).toMatchObject({ step: STEPS[t], epoch: 2 });
      }
      const html = readFileSync(path.join(runDir, "report.html"), "utf8");
      expect(html).toMatch(/^<!DOCTYPE html>/);
      expect(html).toContain("2 of 2 iterations trained.");
      expect(html).toContain("<svg");
      expect(statSync(path.join(runDir, "report.html")).mtimeMs).toBeGreaterThanOrEqual(statSync(path.join(runDir, "run.json")).mtimeMs - 1);
    }
  });

  test("generated rows: one per prompt with the prompt and ground truth kept; iteration 1 trained on its rows and iteration 0's", async () => {
    // The SFT prompts: all 24 of the parquet file and the first 4 of the jsonl file (fraction 0.5).
    const prompts = [...sftRows(24), ...EXTRA.slice(0, 4).map((r) => ({ real: [user(r.prompt), assistant(r.response)] }))];
    const tok = tinyTokenizer();
    const key = (row: Pick<SpinRow, "real">) => JSON.stringify(row.real.map((m) => [m.role, m.content]));
    const rowHash = (row: SpinRow) => createHash("sha256").update(JSON.stringify([row.real, row.generated])).digest("hex");
    const generated: SpinRow[][] = [];
    for (const t of [0, 1]) {
      const rows = await readSpinRows(path.join(plainRun, `iter${t}`, "data"), "train");
      expect(rows).toHaveLength(PROMPTS);
      expect(rows.map(key).sort()).toEqual(prompts.map(key).sort());
      for (const row of rows) {
        expect(row.generated.slice(0, -1).map((m) => [m.role, m.content])).toEqual(row.real.slice(0, -1).map((m) => [m.role, m.content]));
        expect(row.generated.at(-1)!.role).toBe("assistant");
        // max_new_tokens 4 (the EOS included, special tokens dropped from the text)
        expect(tok.encode(row.generated.at(-1)!.content, { addSpecialTokens: false }).length).toBeLessThanOrEqual(4);
      }
      generated.push(rows);
    }
    // θ0 and θ1 answer differently somewhere (else the mix would hold duplicate pairs only).
    expect(generated[1]!.map(rowHash)).not.toEqual(generated[0]!.map(rowHash));
    // The training mix of iteration 1 = all rows of iteration 1 + all rows of iteration 0 (fraction 1):
    // the opponent log-probs were computed for exactly those pairs.
    const expected = new Set([...generated[1]!, ...generated[0]!].map(rowHash));
    for (const [t, pairs] of [[0, new Set(generated[0]!.map(rowHash))], [1, expected]] as const) {
      const cached = JSON.parse(readFileSync(path.join(plainRun, `iter${t}`, "train", "opponent_logps.json"), "utf8")) as Record<string, [number, number]>;
      expect(new Set(Object.keys(cached))).toEqual(pairs);
    }
    expect(runState(plainRun).iteration[1]!.train!.rows).toBe(generated[0]!.length + generated[1]!.length);
  });

  test("re-running with iterations: 3 continues from θ2; iteration 2 trains on its rows + iteration 1's (not iteration 0's)", async () => {
    const more = iterate(killedRun, undefined, ["--iterations=3"]);
    const exit = await more.exit;
    expect(exit.code, describeExit(exit)).toBe(0);
    expect(more.lines.filter((l) => /^iteration \d:/.test(l))).toEqual([
      `iteration 2: generating with ${path.join(killedRun, "iter1", "model")}`,
      `iteration 2: training on ${2 * PROMPTS} pairs from ${path.join(killedRun, "iter1", "model")}`,
    ]);
    const state = runState(killedRun);
    expect(state.iterations).toBe(3);
    expect(state.iteration[2]).toMatchObject({ generate: { rows: PROMPTS }, train: { steps: STEPS[1], rows: 2 * PROMPTS } });
    const rowHash = (row: SpinRow) => createHash("sha256").update(JSON.stringify([row.real, row.generated])).digest("hex");
    const hashes = async (t: number) => (await readSpinRows(path.join(killedRun, `iter${t}`, "data"), "train")).map(rowHash);
    const cached = JSON.parse(readFileSync(path.join(killedRun, "iter2", "train", "opponent_logps.json"), "utf8")) as Record<string, unknown>;
    expect(new Set(Object.keys(cached))).toEqual(new Set([...(await hashes(2)), ...(await hashes(1))]));
    expect(readFileSync(path.join(killedRun, "report.html"), "utf8")).toContain("3 of 3 iterations trained.");
  });
});
