// SpinTrainer and SftTrainer over the shared training loop (lib/spin/trainer.ts,
// lib/spin/loop.ts): learning on a toy pair set, the events and metrics.jsonl, gradient
// accumulation, "plan E epochs, stop after k", kill -9 and resume (a real child process),
// abort and resume, the non-finite guard, checkpoint rotation, SFT, and config validation.
// Models are the tiny llama fixture of fixtures.ts; text is tokenized by the character-level
// tokenizer of tiny-tokenizer.ts, so every token count below is known by hand.
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import {
  CausalLM,
  SftTrainer,
  SpinNativeError,
  type SpinRow,
  SpinTrainer,
  type Tokenizer,
  type TrainerEvents,
  epochOrder,
  loadSafetensors,
  noGrad,
  setNumThreads,
  tensor,
} from "../lib/index.js";
import { type Child, REPO, ensureDist, spawnNode } from "./cli-helpers.js";
import { VOCAB, removeRoot, tempRoot, writeFixture } from "./fixtures.js";
import { SPIN_STEP_METRICS, rejection, valuesOf } from "./helpers.js";
import { TINY_TOKENIZER_CONFIG, pairOf, promptIdsOf, responseIdsOf, tinyTokenizer, tinyTokenizerJson } from "./tiny-tokenizer.js";

const root = tempRoot("trainer");
let dir: string;
let tok: Tokenizer;

beforeAll(async () => {
  // One thread: deterministic runs (bitwise comparisons below), and much faster for these tiny
  // models on two cores than libgomp's two.
  setNumThreads(1);
  dir = path.join(root, "llama");
  await writeFixture(dir, "llama");
  tok = tinyTokenizer();
});
afterAll(() => removeRoot(root));

let runCounter = 0;
const freshOut = (tag = "run") => path.join(root, `${tag}-${++runCounter}`);

type Snapshot = Map<string, number[]>;
function snapshot(model: CausalLM): Snapshot {
  const out: Snapshot = new Map();
  for (const [name, p] of model.parameters()) {
    out.set(name, valuesOf(p));
    p.dispose();
  }
  return out;
}

function maxDiff(a: Snapshot, b: Snapshot): number {
  let diff = 0;
  for (const [name, values] of a) {
    const other = b.get(name)!;
    values.forEach((v, i) => (diff = Math.max(diff, Math.abs(v - other[i]!))));
  }
  return diff;
}

/** transformers' get_linear_schedule_with_warmup multiplier at 0-based update `step`. */
function linearMultiplier(step: number, total: number, warmup: number): number {
  if (step < warmup) return step / Math.max(1, warmup);
  return Math.max(0, (total - step) / Math.max(1, total - warmup));
}

const SIX: SpinRow[] = [
  pairOf("hi", "ab", "cd"),
  pairOf("yo", "abc", "x"),
  pairOf("q", "no", "nope"),
  pairOf("how", "fine", "bad"),
  pairOf("z", "zz", "z"),
  pairOf("m", "mm", "nm"),
];
const EIGHT: SpinRow[] = [...SIX, pairOf("p", "pp", "pq"), pairOf("a", "bb", "cc")];
const TWELVE: SpinRow[] = [...EIGHT, pairOf("ok", "yes", "no"), pairOf("why", "because", "dunno"), pairOf("hey", "hello", "bye"), pairOf("name", "bob", "alice")];

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const textOf = (row: SpinRow, side: "real" | "generated") => row[side][1]!.content;
const promptOf = (row: SpinRow) => row.real[0]!.content;

/** Tokens of one pair's two sequences (prompt + response each), by hand. */
function pairTokens(row: SpinRow): number {
  const prompt = promptIdsOf(promptOf(row)).length;
  return 2 * prompt + responseIdsOf(textOf(row, "real")).length + responseIdsOf(textOf(row, "generated")).length;
}

function collect<K extends keyof TrainerEvents>(trainer: SpinTrainer | SftTrainer, event: K): TrainerEvents[K][] {
  const out: TrainerEvents[K][] = [];
  trainer.on(event, (payload) => out.push(payload));
  return out;
}

// ---- (a) learning -----------------------------------------------------------------------

describe("learning on a toy pair set", () => {
  test("rewards/accuracies reaches 1 and rewards/margins grows", async () => {
    const rows = TWELVE;
    using model = await CausalLM.load(dir);
    const trainer = new SpinTrainer({
      model,
      tokenizer: tok,
      config: {
        outputDir: freshOut("learn"),
        optim: "adamw",
        learningRate: 1e-2,
        beta: 0.5,
        lrSchedulerType: "constant",
        warmupRatio: 0,
        perDeviceTrainBatchSize: 4,
        numTrainEpochs: 50, // 3 updates per epoch: 150 updates
        loggingSteps: 10,
        saveStrategy: "no",
      },
    });
    const logs = collect(trainer, "log");
    const result = await trainer.train(rows);
    expect(result.globalStep).toBe(150);
    expect(logs.length).toBe(15);
    const first = logs[0]!;
    const last = logs.at(-1)!;
    expect(first["pairs/identical"]).toBe(0);
    expect(last["rewards/accuracies"]).toBe(1);
    expect(last["rewards/accuracies_distinct"]).toBe(1);
    expect(last["rewards/margins"]!).toBeGreaterThan(first["rewards/margins"]! + 1);
    expect(last["rewards/margins"]!).toBeGreaterThan(2 * first["rewards/margins"]!);
    expect(last.loss!).toBeLessThan(first.loss! / 2);
    // The real responses became more likely than under the opponent, the generated ones less.
    expect(last["rewards/real"]!).toBeGreaterThan(0);
    expect(last["rewards/generated"]!).toBeLessThan(0);
    expect(result.metrics).toEqual(last);
  });
});

// ---- (b) events -------------------------------------------------------------------------

describe("events and metrics.jsonl", () => {
  test("step, log, eval and checkpoint fire with the documented payloads", async () => {
    const out = freshOut("events");
    using model = await CausalLM.load(dir);
    const lr = 1e-3;
    const trainer = new SpinTrainer({
      model,
      tokenizer: tok,
      config: { outputDir: out, learningRate: lr, perDeviceTrainBatchSize: 2, numTrainEpochs: 1, loggingSteps: 4, saveStrategy: "steps", saveSteps: 3, evalSteps: 3 },
    });
    const order: string[] = [];
    const steps = collect(trainer, "step");
    const logs = collect(trainer, "log");
    const evals = collect(trainer, "eval");
    const checkpoints = collect(trainer, "checkpoint");
    const savedParams = new Map<number, Snapshot>();
    trainer.on("step", (s) => order.push(`step ${s.step}`));
    trainer.on("log", (l) => order.push(`log ${l.step}`));
    trainer.on("eval", (e) => order.push(`eval ${e.step}`));
    trainer.on("checkpoint", (c) => {
      order.push(`checkpoint ${c.step}`);
      savedParams.set(c.step, snapshot(model));
    });
    const result = await trainer.train(TWELVE, { evalRows: SIX.slice(0, 3) });

    // 12 rows / (2 × 1) = 6 updates in one epoch; warmup ceil(0.6) = 1.
    expect(order).toEqual([
      "step 1",
      "step 2",
      "step 3",
      "eval 3",
      "checkpoint 3",
      "step 4",
      "log 4",
      "step 5",
      "step 6",
      "eval 6",
      "checkpoint 6",
      "log 6", // the remainder since the last log, when the run ends
    ]);
    const spinKeys = [
      ...SPIN_STEP_METRICS,
      "generated/length",
      "tokens",
      "learning_rate",
      "grad_norm",
    ];
    steps.forEach((s, k) => {
      expect(s.step).toBe(k + 1);
      expect(s.epoch).toBeCloseTo((k + 1) / 6, 14);
      expect(s.learningRate).toBeCloseTo(lr * linearMultiplier(k, 6, 1), 15);
      expect(s.metrics.learning_rate).toBe(s.learningRate);
      expect(s.metrics.grad_norm).toBe(s.gradNorm);
      expect(s.gradNorm).toBeGreaterThan(0);
      expect(Object.keys(s.metrics).sort()).toEqual([...spinKeys].sort());
      // The batch of update k: rows order[2k], order[2k+1] of the epoch's permutation.
      const rows = epochOrder(12, 42, 0).slice(2 * k, 2 * k + 2).map((i) => TWELVE[i]!);
      expect(s.metrics.tokens, `update ${k + 1}`).toBe(rows.reduce((a, r) => a + pairTokens(r), 0));
      const genLengths = rows.map((r) => responseIdsOf(textOf(r, "generated")).length);
      expect(s.metrics["generated/length"], `update ${k + 1}`).toBe((genLengths[0]! + genLengths[1]!) / 2);
    });
    expect(steps[0]!.learningRate).toBe(0);

    // Logs: means of the step metrics since the previous log, plus step, epoch and tokens/s.
    expect(logs.map((l) => l.step)).toEqual([4, 6]);
    const spans = [
      [0, 4],
      [4, 6],
    ] as const;
    logs.forEach((log, i) => {
      const span = steps.slice(spans[i]![0], spans[i]![1]);
      expect(log.epoch).toBeCloseTo(log.step / 6, 14);
      for (const key of spinKeys) {
        const expected = span.reduce((a, s) => a + s.metrics[key]!, 0) / span.length;
        expect(Math.abs(log[key]! - expected), `log ${log.step} ${key}`).toBeLessThanOrEqual(1e-12 * Math.max(1, Math.abs(expected)));
      }
      // Soft: a failure here is reported without hiding the checks that follow.
      const tokensPerSecond = log["tokens/s"];
      expect.soft(typeof tokensPerSecond === "number" && tokensPerSecond > 0, `log ${log.step} carries tokens/s > 0 (got ${tokensPerSecond})`).toBe(true);
      expect.soft(Object.keys(log).sort(), `log ${log.step} keys`).toEqual([...spinKeys, "step", "epoch", "tokens/s"].sort());
    });

    // metrics.jsonl holds exactly the log lines.
    const lines = readFileSync(path.join(out, "metrics.jsonl"), "utf8").trimEnd().split("\n");
    expect(lines.map((l) => JSON.parse(l))).toEqual(logs.map((l) => JSON.parse(JSON.stringify(l))));

    // Evaluation: eval_-prefixed SPIN metrics of the eval rows.
    expect(evals.map((e) => [e.step, e.epoch])).toEqual([
      [3, 0.5],
      [6, 1],
    ]);
    for (const e of evals) {
      for (const key of spinKeys.filter((k) => !["tokens", "learning_rate", "grad_norm"].includes(k))) expect(e[`eval_${key}`], key).toBeTypeOf("number");
      expect(Number.isFinite(e.eval_loss)).toBe(true);
    }

    // Checkpoints: folder, contents, and the model as it was when saved.
    expect(checkpoints).toEqual([
      { step: 3, dir: path.join(out, "checkpoint-3") },
      { step: 6, dir: path.join(out, "checkpoint-6") },
    ]);
    for (const { step, dir: ckpt } of checkpoints) {
      for (const file of ["model/config.json", "model/model.safetensors", "optimizer.safetensors", "trainer_state.json"]) {
        expect(existsSync(path.join(ckpt, file)), `${ckpt}/${file}`).toBe(true);
      }
      const state = JSON.parse(readFileSync(path.join(ckpt, "trainer_state.json"), "utf8"));
      const { fingerprint, ...counters } = state;
      expect(counters).toEqual({ globalStep: step, epoch: Math.floor(step / 6), stepInEpoch: step % 6, totalSteps: 6, stepsPerEpoch: 6, numRows: 12, seed: 42, optimizerSteps: step, worldSize: 1 });
      // What a resume must keep (test/resume-config.test.ts): the settings as resolved, and the rows.
      expect(fingerprint).toMatchObject({ learningRate: trainer.config.learningRate, decaySteps: 6, rows: 12, worldSize: 1, seed: 42 });
      using saved = await CausalLM.load(path.join(ckpt, "model"));
      expect(snapshot(saved)).toEqual(savedParams.get(step));
      const optimizerState = await loadSafetensors(path.join(ckpt, "optimizer.safetensors"));
      expect(Object.keys(optimizerState)).toContain("lm_head.weight.square_avg");
      for (const t of Object.values(optimizerState)) t.dispose();
    }
    expect(result).toEqual({ globalStep: 6, epoch: 1, aborted: false, metrics: logs.at(-1) });
  });
});

describe("data order", () => {
  test("every epoch takes its updates from its own permutation epochOrder(n, seed, epoch)", async () => {
    // 6 rows, batch 2: 3 updates per epoch, 3 epochs. The tokens of each update identify its rows.
    using model = await CausalLM.load(dir);
    const trainer = new SpinTrainer({ model, tokenizer: tok, config: { outputDir: freshOut("order"), perDeviceTrainBatchSize: 2, numTrainEpochs: 3, saveStrategy: "no" } });
    const steps = collect(trainer, "step");
    await trainer.train(SIX);
    expect(steps.length).toBe(9);
    const expected = steps.map((_, k) => {
      const rows = epochOrder(6, 42, Math.floor(k / 3)).slice(2 * (k % 3), 2 * (k % 3) + 2);
      return { step: k + 1, tokens: rows.reduce((a, i) => a + pairTokens(SIX[i]!), 0), generatedLength: mean(rows.map((i) => responseIdsOf(textOf(SIX[i]!, "generated")).length)) };
    });
    expect(steps.map((s) => ({ step: s.step, tokens: s.metrics.tokens, generatedLength: s.metrics["generated/length"] }))).toEqual(expected);
  });
});

// ---- (c) gradient accumulation ----------------------------------------------------------

describe("gradient accumulation", () => {
  test("batch 4 × accumulation 2 equals batch 8 × accumulation 1 (same rows per update, same order)", async () => {
    // Both take update k from rows order[8k .. 8k+8) of the epoch's permutation (epochOrder);
    // accumulation splits them into [0, 4) and [4, 8) and scales each micro-batch loss by ½,
    // so the accumulated gradient is the gradient of the mean loss over the 8 pairs.
    const rows = [
      ...TWELVE,
      pairOf("x", "xy", "yx"),
      pairOf("to", "be", "not"),
      pairOf("k", "kk", "kkk"),
      pairOf("go", "went", "gone"),
    ];
    const run = async (batch: number, accumulation: number) => {
      using model = await CausalLM.load(dir, { dtype: "float64" });
      const trainer = new SpinTrainer({
        model,
        tokenizer: tok,
        config: {
          outputDir: freshOut("accum"),
          optim: "adamw",
          learningRate: 1e-3,
          beta: 0.5,
          warmupRatio: 0,
          perDeviceTrainBatchSize: batch,
          gradientAccumulationSteps: accumulation,
          numTrainEpochs: 2,
          saveStrategy: "no",
        },
      });
      const steps = collect(trainer, "step");
      await trainer.train(rows);
      return { steps, params: snapshot(model) };
    };
    const whole = await run(8, 1);
    const accumulated = await run(4, 2);
    expect(whole.steps.length).toBe(4);
    expect(accumulated.steps.length).toBe(4);
    accumulated.steps.forEach((s, k) => {
      const w = whole.steps[k]!;
      expect(s.learningRate).toBe(w.learningRate);
      for (const key of ["loss", "rewards/real", "rewards/generated", "rewards/accuracies", "rewards/margins", "logps/real", "logps/generated", "grad_norm"]) {
        const a = s.metrics[key]!;
        const b = w.metrics[key]!;
        expect(Math.abs(a - b), `update ${k + 1} ${key}: ${a} vs ${b}`).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(b)));
      }
    });
    expect(maxDiff(whole.params, accumulated.params)).toBeLessThanOrEqual(1e-6);
    using initial = await CausalLM.load(dir, { dtype: "float64" });
    expect(maxDiff(whole.params, snapshot(initial)), "the run moved the parameters").toBeGreaterThan(1e-4);
  });
});

// ---- (d) plan E epochs, stop after k ----------------------------------------------------

describe("plan E epochs, stop after k", () => {
  test("numTrainEpochs 3, stopAfterEpochs 1: stepsPerEpoch updates on the 3-epoch schedule; resuming with stopAfterEpochs 2 continues it", async () => {
    const out = freshOut("stop");
    const lr = 1e-3;
    const config = { outputDir: out, learningRate: lr, perDeviceTrainBatchSize: 2, numTrainEpochs: 3, loggingSteps: 1 };
    // 6 rows / 2 = 3 updates per epoch, 9 planned, warmup ceil(0.1 · 9) = 1.
    using model = await CausalLM.load(dir);
    const first = new SpinTrainer({ model, tokenizer: tok, config: { ...config, stopAfterEpochs: 1 } });
    const steps = collect(first, "step");
    const result = await first.train(SIX);
    expect(result.globalStep).toBe(3);
    expect(result.epoch).toBe(1);
    expect(result.aborted).toBe(false);
    expect(steps.map((s) => s.step)).toEqual([1, 2, 3]);
    steps.forEach((s, k) => expect(s.learningRate, `update ${k + 1}`).toBeCloseTo(lr * linearMultiplier(k, 9, 1), 15));
    expect(steps.map((s) => s.learningRate / lr)).toEqual([0, 1, 7 / 8]);
    const state = JSON.parse(readFileSync(path.join(out, "checkpoint-3", "trainer_state.json"), "utf8"));
    expect(state).toMatchObject({ globalStep: 3, epoch: 1, stepInEpoch: 0, totalSteps: 9, stepsPerEpoch: 3 });

    using again = await CausalLM.load(dir);
    const second = new SpinTrainer({ model: again, tokenizer: tok, config: { ...config, stopAfterEpochs: 2 } });
    const more = collect(second, "step");
    const resumed = await second.train(SIX, { resumeFrom: "latest" });
    expect(resumed.globalStep).toBe(6);
    expect(more.map((s) => s.step)).toEqual([4, 5, 6]);
    more.forEach((s) => expect(s.learningRate, `update ${s.step}`).toBeCloseTo(lr * linearMultiplier(s.step - 1, 9, 1), 15));
  });
});

// ---- (e) kill -9 and resume -------------------------------------------------------------

describe("kill -9 mid-run and resume", () => {
  function runChild(job: object, onLine?: (line: string, child: ChildProcess) => void): Child {
    const jobFile = path.join(root, `job-${++runCounter}.json`);
    writeFileSync(jobFile, JSON.stringify(job));
    return spawnNode(path.join(REPO, "test", "trainer-runner.mjs"), [jobFile], onLine);
  }

  test("SIGKILL after a checkpoint ≥ 4, resume from latest: the final model equals an uninterrupted run's bitwise", async () => {
    ensureDist();
    const base = {
      modelDir: dir,
      tokenizer: { json: tinyTokenizerJson(), config: TINY_TOKENIZER_CONFIG },
      rows: TWELVE,
    };
    // One epoch of 12 updates (batch 1), a checkpoint every 2. (One epoch: resuming across an
    // epoch boundary is covered in-process by the AbortSignal tests below.)
    const config = { learningRate: 1e-3, beta: 0.5, perDeviceTrainBatchSize: 1, numTrainEpochs: 1, saveStrategy: "steps", saveSteps: 2, loggingSteps: 2 };

    const plainOut = path.join(root, "kill-plain");
    const plain = runChild({ ...base, config: { ...config, outputDir: plainOut }, finalDir: path.join(plainOut, "final") });
    const plainExit = await plain.exit;
    expect(plainExit.code, plainExit.stderr).toBe(0);
    expect(plain.lines.at(-1)).toMatch(/^done .*"globalStep":12/);

    const out = path.join(root, "kill-resume");
    let killedAfter = -1;
    const victim = runChild({ ...base, config: { ...config, outputDir: out }, finalDir: path.join(out, "final"), slowMs: 60 }, (line, child) => {
      const m = /^checkpoint (\d+)$/.exec(line);
      if (m && Number(m[1]) >= 4 && killedAfter < 0 && existsSync(path.join(out, `checkpoint-${m[1]}`))) {
        killedAfter = Number(m[1]);
        child.kill("SIGKILL");
      }
    });
    const victimExit = await victim.exit;
    expect(victimExit.signal, `the child was killed (stdout: ${victim.lines.join(" | ")}; stderr: ${victimExit.stderr})`).toBe("SIGKILL");
    expect(killedAfter).toBeGreaterThanOrEqual(4);
    expect(victim.lines.some((l) => l.startsWith("done"))).toBe(false);
    expect(existsSync(path.join(out, "final"))).toBe(false);

    const resumed = runChild({ ...base, config: { ...config, outputDir: out }, finalDir: path.join(out, "final"), resume: true });
    const resumedExit = await resumed.exit;
    expect(resumedExit.code, resumedExit.stderr).toBe(0);
    const firstStep = Number(/^step (\d+)$/.exec(resumed.lines[0]!)?.[1]);
    expect(firstStep, "the resumed run starts after a checkpoint ≥ 4").toBeGreaterThanOrEqual(5);
    expect(resumed.lines.at(-1)).toMatch(/^done .*"globalStep":12/);

    const bytes = (p: string) => readFileSync(p);
    expect(bytes(path.join(out, "final", "model.safetensors")).equals(bytes(path.join(plainOut, "final", "model.safetensors"))), "final model.safetensors identical").toBe(true);
    expect(bytes(path.join(out, "checkpoint-12", "optimizer.safetensors")).equals(bytes(path.join(plainOut, "checkpoint-12", "optimizer.safetensors"))), "optimizer state identical").toBe(true);
    // The metrics log was cut back to the checkpoint and continued: the same lines (tokens/s aside).
    const metrics = (d: string) =>
      readFileSync(path.join(d, "metrics.jsonl"), "utf8")
        .trimEnd()
        .split("\n")
        .map((l) => {
          const { "tokens/s": _, ...rest } = JSON.parse(l) as Record<string, number>;
          return rest;
        });
    expect(metrics(out)).toEqual(metrics(plainOut));
  });
});

// ---- (f) abort --------------------------------------------------------------------------

describe("AbortSignal", () => {
  // 8 rows / 2 = 4 updates per epoch, 2 epochs. Update 3 is mid-epoch; update 4 ends epoch 0,
  // so resuming from it starts epoch 1 (a new permutation of the rows).
  test.each([3, 4])("abort after update %i: resolves aborted with a checkpoint of that update; resuming finishes equal to an uninterrupted run", async (at) => {
    const config = { learningRate: 1e-3, beta: 0.5, perDeviceTrainBatchSize: 2, numTrainEpochs: 2, saveStrategy: "no" as const };
    using plainModel = await CausalLM.load(dir);
    const plain = new SpinTrainer({ model: plainModel, tokenizer: tok, config: { ...config, outputDir: freshOut("abort-plain") } });
    const plainResult = await plain.train(EIGHT);
    expect(plainResult.globalStep).toBe(8);

    const out = freshOut("abort");
    using model = await CausalLM.load(dir);
    const trainer = new SpinTrainer({ model, tokenizer: tok, config: { ...config, outputDir: out } });
    const controller = new AbortController();
    trainer.on("step", (s) => {
      if (s.step === at) controller.abort();
    });
    const checkpoints = collect(trainer, "checkpoint");
    const aborted = await trainer.train(EIGHT, { signal: controller.signal });
    expect(aborted.aborted).toBe(true);
    expect(aborted.globalStep).toBe(at);
    expect(aborted.epoch).toBe(at / 4);
    expect(checkpoints.map((c) => c.step)).toEqual([at]); // written on abort even with saveStrategy "no"
    const state = JSON.parse(readFileSync(path.join(out, `checkpoint-${at}`, "trainer_state.json"), "utf8"));
    expect(state).toMatchObject({ globalStep: at, epoch: Math.floor(at / 4), stepInEpoch: at % 4, optimizerSteps: at });
    using saved = await CausalLM.load(path.join(out, `checkpoint-${at}`, "model"));
    expect(snapshot(saved)).toEqual(snapshot(model));

    // A fresh process would start from θ0 again: load it, resume from the checkpoint.
    using restarted = await CausalLM.load(dir);
    const resumedTrainer = new SpinTrainer({ model: restarted, tokenizer: tok, config: { ...config, outputDir: out } });
    const resumedSteps = collect(resumedTrainer, "step");
    const resumed = await resumedTrainer.train(EIGHT, { resumeFrom: "latest" });
    expect(resumed).toMatchObject({ globalStep: 8, aborted: false });
    expect(resumedSteps.map((s) => s.step)).toEqual(Array.from({ length: 8 - at }, (_, i) => at + 1 + i));
    expect(maxDiff(snapshot(restarted), snapshot(plainModel)), "largest parameter difference to the uninterrupted run").toBe(0);
  });
});

// ---- (g) non-finite guard ---------------------------------------------------------------

describe("non-finite loss", () => {
  // Rows 8, batch 2: 4 updates per epoch. The row whose opponent log-prob is corrupted (to
  // 1e39, Infinity in float32) sits in update 3 of epoch 0.
  const order = epochOrder(8, 42, 0);
  const target = order[5]!;

  /** A run folder whose opponent_logps.json cache has the target row's real log-prob at 1e39. */
  async function corruptedRunDir(): Promise<string> {
    const prep = freshOut("nan-prep");
    {
      using model = await CausalLM.load(dir);
      const trainer = new SpinTrainer({ model, tokenizer: tok, config: { outputDir: prep, maxSteps: 1, perDeviceTrainBatchSize: 2, saveStrategy: "no" } });
      await trainer.train(EIGHT);
    }
    const cacheFile = path.join(prep, "opponent_logps.json");
    const cache = JSON.parse(readFileSync(cacheFile, "utf8")) as Record<string, [number, number]>;
    expect(Object.keys(cache).length).toBe(8);
    // Find the target row's entry by value: its log-probs under θ0, computed here on its own.
    using model = await CausalLM.load(dir);
    const expected = await pairLogps(model, EIGHT[target]!);
    const [key] = Object.entries(cache).sort(
      ([, a], [, b]) => Math.abs(a[0] - expected[0]) + Math.abs(a[1] - expected[1]) - (Math.abs(b[0] - expected[0]) + Math.abs(b[1] - expected[1])),
    )[0]!;
    cache[key] = [1e39, cache[key]![1]];
    const out = freshOut("nan");
    mkdirSync(out, { recursive: true });
    writeFileSync(path.join(out, "opponent_logps.json"), JSON.stringify(cache));
    return out;
  }

  test("onNonFinite 'error': rejects naming the update and the rows; the last checkpoint is intact", async () => {
    const out = await corruptedRunDir();
    using model = await CausalLM.load(dir);
    const trainer = new SpinTrainer({
      model,
      tokenizer: tok,
      config: { outputDir: out, learningRate: 1e-3, perDeviceTrainBatchSize: 2, saveStrategy: "steps", saveSteps: 2 },
    });
    const saved = new Map<number, { bytes: Buffer; params: Snapshot }>();
    trainer.on("checkpoint", (c) => saved.set(c.step, { bytes: readFileSync(path.join(c.dir, "model", "model.safetensors")), params: snapshot(model) }));
    const error = await rejection(trainer.train(EIGHT));
    expect(error).toBeInstanceOf(SpinNativeError);
    const message = (error as Error).message;
    expect(message).toMatch(/update 3\b/);
    expect(message).toMatch(/Infinity|NaN|non-finite/);
    const rows = /rows ([\d, ]+)/.exec(message)?.[1]?.split(", ").map(Number);
    expect(rows, message).toEqual([order[4], order[5]]);
    expect(message).toContain(out);

    expect([...saved.keys()]).toEqual([2]);
    expect(existsSync(path.join(out, "checkpoint-3"))).toBe(false);
    expect(existsSync(path.join(out, "checkpoint-4"))).toBe(false);
    const ckpt = path.join(out, "checkpoint-2");
    expect(readFileSync(path.join(ckpt, "model", "model.safetensors")).equals(saved.get(2)!.bytes)).toBe(true);
    using reloaded = await CausalLM.load(path.join(ckpt, "model"));
    expect(snapshot(reloaded)).toEqual(saved.get(2)!.params);
    expect(JSON.parse(readFileSync(path.join(ckpt, "trainer_state.json"), "utf8"))).toMatchObject({ globalStep: 2, optimizerSteps: 2 });
  });

  test("onNonFinite 'skip': that update is dropped (parameters unchanged) and training continues", async () => {
    const out = await corruptedRunDir();
    using model = await CausalLM.load(dir);
    const trainer = new SpinTrainer({
      model,
      tokenizer: tok,
      config: { outputDir: out, learningRate: 1e-3, perDeviceTrainBatchSize: 2, saveStrategy: "no", onNonFinite: "skip", warmupRatio: 0 },
    });
    const after = new Map<number, Snapshot>();
    const steps = collect(trainer, "step");
    trainer.on("step", (s) => after.set(s.step, snapshot(model)));
    const result = await trainer.train(EIGHT);
    expect(result.globalStep).toBe(4);
    expect(steps[2]!.metrics.loss).toBe(Number.POSITIVE_INFINITY);
    expect(Number.isNaN(steps[2]!.gradNorm)).toBe(true);
    expect(after.get(3)).toEqual(after.get(2)); // dropped
    expect(maxDiff(after.get(4)!, after.get(3)!)).toBeGreaterThan(0); // the next one applied
    for (const values of after.get(4)!.values()) expect(values.every(Number.isFinite)).toBe(true);
    for (const s of [steps[0]!, steps[1]!, steps[3]!]) expect(Number.isFinite(s.metrics.loss)).toBe(true);
  });
});

/** The opponent log-probs of one pair on its own: [real, generated] summed over response tokens. */
async function pairLogps(model: CausalLM, row: SpinRow): Promise<[number, number]> {
  const prompt = promptIdsOf(promptOf(row));
  const seqs = (["real", "generated"] as const).map((side) => ({ prompt, response: responseIdsOf(textOf(row, side)) }));
  const sums = seqs.map(({ prompt: p, response: r }) => {
    const ids = [...p, ...r];
    const labels = ids.map((id, i) => (i >= p.length ? id : -100));
    const idsT = tensor([ids], { dtype: "int64" });
    const mask = tensor([ids.map(() => 1)], { dtype: "int64" });
    const labelsT = tensor([labels], { dtype: "int64" });
    return { idsT, mask, labelsT };
  });
  const out: number[] = [];
  for (const { idsT, mask, labelsT } of sums) {
    const lp = await noGrad(() => model.logprobs(idsT, mask, labelsT));
    out.push(valuesOf(lp.sum)[0]!);
    for (const t of [idsT, mask, labelsT, lp.sum, lp.tokens, lp.logitMean]) t.dispose();
  }
  return [out[0]!, out[1]!];
}

// ---- (h) rotation -----------------------------------------------------------------------

describe("saveTotalLimit", () => {
  test("keeps only the newest N checkpoints", async () => {
    const out = freshOut("rotate");
    using model = await CausalLM.load(dir);
    const trainer = new SpinTrainer({
      model,
      tokenizer: tok,
      config: { outputDir: out, perDeviceTrainBatchSize: 2, numTrainEpochs: 2, saveStrategy: "steps", saveSteps: 1, saveTotalLimit: 2 },
    });
    const checkpoints = collect(trainer, "checkpoint");
    await trainer.train(SIX);
    expect(checkpoints.map((c) => c.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(readdirSync(out).filter((n) => n.startsWith("checkpoint-")).sort()).toEqual(["checkpoint-5", "checkpoint-6"]);
  });
});

// ---- identical pairs in a run -----------------------------------------------------------

describe("a model that reproduces every answer", () => {
  test("a SPIN run on only identical pairs leaves the parameters unchanged (zero gradient)", async () => {
    const rows = SIX.map((r) => pairOf(promptOf(r), textOf(r, "real"), textOf(r, "real")));
    using model = await CausalLM.load(dir);
    const before = snapshot(model);
    const trainer = new SpinTrainer({
      model,
      tokenizer: tok,
      config: { outputDir: freshOut("identical"), learningRate: 1e-3, warmupRatio: 0, perDeviceTrainBatchSize: 3, numTrainEpochs: 2, saveStrategy: "no" },
    });
    const steps = collect(trainer, "step");
    await trainer.train(rows);
    expect(steps.every((s) => s.metrics["pairs/identical"] === 1)).toBe(true);
    expect.soft(steps.map((s) => s.gradNorm), "grad norms").toEqual(steps.map(() => 0));
    expect(maxDiff(snapshot(model), before), "largest parameter change").toBe(0);
  });
});

// ---- (i) SFT ----------------------------------------------------------------------------

describe("SftTrainer", () => {
  /** Mean NLL per response token of the real responses, from the model's logits in float64 JS. */
  function referenceNll(model: CausalLM, rows: SpinRow[]): number {
    let nll = 0;
    let count = 0;
    for (const row of rows) {
      const prompt = promptIdsOf(promptOf(row));
      const response = responseIdsOf(textOf(row, "real"));
      const ids = [...prompt, ...response];
      const logits = noGrad(() => {
        const idsT = tensor([ids], { dtype: "int64" });
        const mask = tensor([ids.map(() => 1)], { dtype: "int64" });
        const out = model.forward(idsT, mask);
        idsT.dispose();
        mask.dispose();
        return out;
      });
      const flat = valuesOf(logits);
      logits.dispose();
      for (let t = prompt.length; t < ids.length; t++) {
        const row = flat.slice((t - 1) * VOCAB, t * VOCAB);
        const max = Math.max(...row);
        const lse = max + Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0));
        nll -= row[ids[t]!]! - lse;
        count++;
      }
    }
    return nll / count;
  }

  test("the loss on the real responses falls; evaluate() is the mean NLL per response token", async () => {
    using model = await CausalLM.load(dir);
    const rows = EIGHT;
    const lr = 1e-2;
    const trainer = new SftTrainer({
      model,
      tokenizer: tok,
      config: { outputDir: freshOut("sft"), optim: "adamw", learningRate: lr, lrSchedulerType: "constant", warmupRatio: 0, perDeviceTrainBatchSize: 4, numTrainEpochs: 20, saveStrategy: "no" },
    });
    const initialNll = referenceNll(model, rows);
    const steps = collect(trainer, "step");
    // The first update's loss: the mean NLL per response token of its 4 rows, at θ0.
    const firstRows = epochOrder(8, 42, 0).slice(0, 4).map((i) => rows[i]!);
    const firstExpected = referenceNll(model, firstRows);
    const before = await trainer.evaluate(rows);
    expect(Math.abs(before.eval_loss! - initialNll) / initialNll, `eval_loss ${before.eval_loss} vs ${initialNll}`).toBeLessThan(1e-5);
    await trainer.train(rows);
    expect(steps.length).toBe(40);
    expect(Math.abs(steps[0]!.metrics.loss! - firstExpected) / firstExpected).toBeLessThan(1e-5);
    expect(steps[0]!.metrics["response/tokens"]).toBe(firstRows.reduce((a, r) => a + responseIdsOf(textOf(r, "real")).length, 0));
    expect(steps.at(-1)!.metrics.loss!).toBeLessThan(steps[0]!.metrics.loss! / 2);
    // evaluate() weights batches by their response tokens (chunks of 3, 3 and 2 rows here).
    const evalTrainer = new SftTrainer({ model, tokenizer: tok, config: { outputDir: freshOut("sft-eval"), perDeviceTrainBatchSize: 3 } });
    const after = await evalTrainer.evaluate(rows);
    const expected = referenceNll(model, rows);
    expect(Object.keys(after)).toEqual(["eval_loss"]);
    expect(Math.abs(after.eval_loss! - expected) / expected, `eval_loss ${after.eval_loss} vs ${expected}`).toBeLessThan(1e-5);
    expect(expected).toBeLessThan(initialNll / 2);
  });
});

// ---- (j) config validation --------------------------------------------------------------

describe("config validation", () => {
  const invalid: [string, unknown][] = [
    ["outputDir", ""],
    ["learningRate", -1e-3],
    ["learningRate", Number.NaN],
    ["numTrainEpochs", 0],
    ["numTrainEpochs", 1.5],
    ["perDeviceTrainBatchSize", 0],
    ["gradientAccumulationSteps", 0],
    ["loggingSteps", 0],
    ["saveSteps", -2],
    ["maxLength", 0],
    ["maxPromptLength", 2.5],
    ["maxGradNorm", -1],
    ["warmupRatio", 1.5],
    ["warmupRatio", -0.1],
    ["maxSteps", -1],
    ["maxSteps", 2.5],
    ["stopAfterEpochs", 0],
    ["optim", "sgd"],
    ["lrSchedulerType", "polynomial"],
    ["saveStrategy", "best"],
    ["onNonFinite", "ignore"],
    ["beta", 0],
    ["beta", -0.1],
    ["lossType", "kto"],
  ];
  test.each(invalid)("%s = %s → SpinNativeError naming the field", (field, value) => {
    const make = () => new SpinTrainer({ model: null as unknown as CausalLM, tokenizer: tok, config: { outputDir: "/tmp/x", [field]: value } });
    expect(make).toThrow(SpinNativeError);
    try {
      make();
    } catch (error) {
      expect((error as SpinNativeError).code).toBe("INVALID_ARGUMENT");
      expect((error as Error).message).toContain(field);
    }
  });

  // Values the optimizer or schedule cannot use (torch.optim and transformers reject them),
  // which resolveConfig does not check yet: each must fail up front, naming the field.
  const unchecked: [string, unknown][] = [
    ["labelSmoothing", -0.1],
    ["labelSmoothing", Number.NaN],
    ["warmupSteps", -1],
    ["warmupSteps", 2.5],
    ["adamBeta1", 1],
    ["adamBeta2", -0.1],
    ["rmspropAlpha", 1.5],
    ["adamEpsilon", -1],
    ["weightDecay", Number.NaN],
    ["evalSteps", 0],
  ];
  test.each(unchecked)("%s = %s → SpinNativeError naming the field", (field, value) => {
    const make = () => new SpinTrainer({ model: null as unknown as CausalLM, tokenizer: tok, config: { outputDir: "/tmp/x", [field]: value } });
    let error: unknown = null;
    try {
      make();
    } catch (e) {
      error = e;
    }
    expect(error, `${field} = ${String(value)} was accepted`).toBeInstanceOf(SpinNativeError);
    expect((error as Error).message).toContain(field);
  });

  test("SftTrainer validates the same fields", () => {
    expect(() => new SftTrainer({ model: null as unknown as CausalLM, tokenizer: tok, config: { outputDir: "/tmp/x", perDeviceTrainBatchSize: 0 } })).toThrow(/perDeviceTrainBatchSize/);
  });

  test("saveTotalLimit 0 never deletes the checkpoint just written (rejected up front, or no rotation)", async () => {
    const out = freshOut("limit0");
    using model = await CausalLM.load(dir);
    let trainer: SpinTrainer;
    try {
      trainer = new SpinTrainer({ model, tokenizer: tok, config: { outputDir: out, perDeviceTrainBatchSize: 3, saveStrategy: "steps", saveSteps: 1, saveTotalLimit: 0 } });
    } catch (error) {
      expect(error).toBeInstanceOf(SpinNativeError);
      expect((error as Error).message).toContain("saveTotalLimit");
      return;
    }
    await trainer.train(SIX);
    expect(readdirSync(out).filter((n) => n.startsWith("checkpoint-")).length, "checkpoints left").toBeGreaterThan(0);
  });

  test("an empty row list is an error", async () => {
    using model = await CausalLM.load(dir);
    const trainer = new SpinTrainer({ model, tokenizer: tok, config: { outputDir: freshOut("empty") } });
    await expect(trainer.train([])).rejects.toThrow(SpinNativeError);
  });

  test("resuming with other rows is an error naming the mismatch", async () => {
    const out = freshOut("mismatch");
    {
      using model = await CausalLM.load(dir);
      const trainer = new SpinTrainer({ model, tokenizer: tok, config: { outputDir: out, perDeviceTrainBatchSize: 2, maxSteps: 2, saveStrategy: "steps", saveSteps: 2 } });
      await trainer.train(SIX);
    }
    using model = await CausalLM.load(dir);
    const trainer = new SpinTrainer({ model, tokenizer: tok, config: { outputDir: out, perDeviceTrainBatchSize: 2, maxSteps: 2, saveStrategy: "steps", saveSteps: 2 } });
    const error = await rejection(trainer.train(EIGHT, { resumeFrom: "latest" }));
    expect(error).toBeInstanceOf(SpinNativeError);
    expect((error as Error).message).toMatch(/rows: 6 → 8/);
  });
});
