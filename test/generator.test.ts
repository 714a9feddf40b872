// SelfPlayGenerator (lib/spin/generator.ts): SFT rows of every accepted shape → SPIN rows
// {real, generated} from a tiny llama whose vocabulary is the tiny char tokenizer's. Checks the
// rows themselves (real = the input, generated = the same prompt + the model's answer, each
// answer equal to generating that prompt alone), the seeded shuffle and fractions (merged
// fractions = the whole run, sampled rows seeded by their shuffled index), resume after a
// crash (byte-equal output), the spin-instruction prompt, parquet output read back with
// hyparquet, length-sorted batching, events, and bad inputs.
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import path from "node:path";

import { parquetMetadata, parquetReadObjects } from "hyparquet";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import {
  CausalLM,
  type GenerationBatch,
  type GenerationProgress,
  type GenerationSummary,
  SelfPlayGenerator,
  type SelfPlayOptions,
  type SpinNativeError,
  type SpinRow,
  type Tokenizer,
  mergeFractions,
  setNumThreads,
  shuffledOrder,
  spinInstructionPrompt,
  toSpinRow,
} from "../lib/index.js";
import type { ChatMessage } from "../lib/model/tokenizer.js";
import { removeRoot, tempRoot } from "./fixtures.js";
import { rejection } from "./helpers.js";
import { writeCharModel } from "./tiny-char-model.js";
import { assistant, tinyTokenizer, user } from "./tiny-tokenizer.js";

const root = tempRoot("generator");
let model: CausalLM;
let tok: Tokenizer;

beforeAll(async () => {
  setNumThreads(1);
  await writeCharModel(path.join(root, "model"));
  model = await CausalLM.load(path.join(root, "model"));
  tok = tinyTokenizer();
});
afterAll(() => {
  model?.dispose();
  removeRoot(root);
});

const system = (content: string): ChatMessage => ({ role: "system", content });

/** SFT rows in every shape toSpinRow accepts (10 rows). */
const SFT: unknown[] = [
  { prompt: "hi", response: "hello" },
  { messages: [system("be brief"), user("what is up"), assistant("not much")] },
  { prompt: "why is the sky blue?", completion: "light" },
  { real: [user("ok"), assistant("fine")], generated: [user("ok"), assistant("")] },
  { prompt: "a b c", chosen: "d e f", rejected: "x" },
  { messages: [user("one"), assistant("two"), user("three"), assistant("four")] },
  { prompt: "tell me a story about a dog", response: "no" },
  { prompt: "yes", response: "no" },
  { prompt: [user("zzz")], response: "sleep" },
  { prompt: "how are you", response: "good" },
];
const N = SFT.length;
const MAX_NEW = 12;

let runCounter = 0;
const freshDir = () => path.join(root, `out-${++runCounter}`);

function generator(options: SelfPlayOptions = {}): SelfPlayGenerator {
  return new SelfPlayGenerator({ model, tokenizer: tok, options: { maxNewTokens: MAX_NEW, batchSize: 3, ...options } });
}

function readJsonl(file: string): SpinRow[] {
  const text = readFileSync(file, "utf8");
  expect(text.endsWith("\n")).toBe(true);
  return text
    .slice(0, -1)
    .split("\n")
    .map((line) => JSON.parse(line) as SpinRow);
}

async function collect(g: SelfPlayGenerator, rows: unknown[] = SFT): Promise<SpinRow[]> {
  const out: SpinRow[] = [];
  for await (const row of g.rows(rows)) out.push(row);
  return out;
}

/** The model's answer to one prompt alone (greedy unless options say otherwise). */
async function answerAlone(prompt: ChatMessage[], options: { text?: string; seed?: number; doSample?: boolean; maxNewTokens?: number } = {}): Promise<string> {
  const ids = tok.encode(options.text ?? tok.promptText(prompt));
  const result = await model.generate([ids], { tokenizer: tok, maxNewTokens: options.maxNewTokens ?? MAX_NEW, doSample: options.doSample, topK: options.doSample ? 0 : undefined, seeds: [options.seed ?? 0] });
  return result.generations[0]!.text!;
}

describe("rows", () => {
  test("run(): one {real, generated} row per prompt, in the seed-42 shuffled order; real = the input, generated = same prompt + the model's answer", async () => {
    const out = freshDir();
    const progress: GenerationProgress[] = [];
    const batches: GenerationBatch[] = [];
    let done: GenerationSummary | null = null;
    const g = generator()
      .on("progress", (p) => progress.push(p))
      .on("batch", (b) => batches.push(b))
      .on("done", (s) => (done = s));
    const summary = await g.run(SFT, out);
    const file = path.join(out, "train", "train-0.jsonl");
    expect(summary.files).toEqual([file]);
    const rows = readJsonl(file);
    expect(rows).toHaveLength(N);
    const order = shuffledOrder(N, 42);
    for (const [j, row] of rows.entries()) {
      const input = toSpinRow(SFT[order[j]!], { row: order[j]! });
      expect(row.real).toEqual(input.real);
      expect(row.generated.slice(0, -1)).toEqual(row.real.slice(0, -1));
      expect(row.generated.at(-1)!.role).toBe("assistant");
      // Each answer is what the model gives the prompt alone (batching changes nothing).
      expect(row.generated.at(-1)!.content).toBe(await answerAlone(row.real.slice(0, -1)));
    }
    // Not vacuous: the answers differ between prompts.
    expect(new Set(rows.map((r) => r.generated.at(-1)!.content)).size).toBeGreaterThan(5);

    expect(summary).toMatchObject({ fraction: 0, rows: N, resumedRows: 0, generatedRows: N, skipped: 0, skippedRows: [] });
    expect(summary.finishReasons.eos + summary.finishReasons.stop + summary.finishReasons.length).toBe(N);
    expect(summary.eosRate).toBe(summary.finishReasons.eos / N);
    expect(summary.meanGeneratedTokens).toBeGreaterThan(0);
    expect(summary.meanGeneratedTokens).toBeLessThanOrEqual(MAX_NEW);
    expect(summary.newTokens).toBe(batches.reduce((sum, b) => sum + b.newTokens, 0));
    expect(done).toEqual(summary);
    expect(batches.reduce((sum, b) => sum + b.rows, 0)).toBe(N);
    // One generate call per window of batchSize (3) × sortWindowBatches (8) rows.
    expect(batches.every((b) => b.rows <= 3 * 8)).toBe(true);
    expect(progress).toHaveLength(batches.length);
    expect(progress.at(-1)).toMatchObject({ rows: N, total: N, etaSeconds: 0 });
    expect(progress.every((p) => p.tokensPerSecond > 0 && p.elapsedSeconds > 0)).toBe(true);
    expect(progress.map((p) => p.rows)).toEqual([...progress.map((p) => p.rows)].sort((a, b) => a - b));

    // The input rows are not modified.
    expect(SFT[0]).toEqual({ prompt: "hi", response: "hello" });
    // rows(): the same rows, without writing anything.
    expect(await collect(generator())).toEqual(rows);
  });

  test("the shuffle: a fixed permutation of 0..n-1 for seed 42, the same on every machine", () => {
    const order = shuffledOrder(N, 42);
    expect([...order].sort((a, b) => a - b)).toEqual([...Array(N).keys()]);
    expect(order).toEqual(GOLDEN_ORDER_10);
    expect(shuffledOrder(N, 43)).not.toEqual(order);
    expect(shuffledOrder(1000, 42)).toEqual(shuffledOrder(1000, 42));
  });

  test("spin-instruction prompt format: exactly \"### Instruction: {x}\\n\\n### Response: \", x = the last user message", async () => {
    expect(spinInstructionPrompt("what is up")).toBe("### Instruction: what is up\n\n### Response: ");
    // Characters outside the tiny vocabulary ("#", ":", capitals) encode as <unk>; 4 new tokens leave room for them (33 + 27 = 60 prompt tokens for the longest).
    const g = generator({ promptFormat: "spin-instruction", maxNewTokens: 4 });
    expect(g.promptText([user("what is up")])).toBe("### Instruction: what is up\n\n### Response: ");
    expect(g.promptText([system("s"), user("one"), assistant("two"), user("three")])).toBe("### Instruction: three\n\n### Response: ");
    // The chat format renders the template (Zephyr's for the tiny tokenizer).
    expect(generator().promptText([user("x")])).toBe("<|system|>\n</s>\n<|user|>\nx</s>\n<|assistant|>\n");
    const rows = await collect(g);
    const order = shuffledOrder(N, 42);
    for (const [j, row] of rows.entries()) {
      const prompt = row.real.slice(0, -1);
      expect(row.real).toEqual(toSpinRow(SFT[order[j]!], { row: 0 }).real);
      const x = [...prompt].reverse().find((m) => m.role === "user")!.content;
      expect(row.generated.at(-1)!.content).toBe(await answerAlone(prompt, { text: spinInstructionPrompt(x), maxNewTokens: 4 }));
    }
  });

  test("windows with continuous batching: rows in input order, the same greedy outputs whatever the batch size, window or sorting", async () => {
    // Prompts of alternating short and long lengths (1, 30, 2, 29, ...).
    const rows = Array.from({ length: 12 }, (_, i) => ({ prompt: "ab cd".repeat(7).slice(0, i % 2 === 0 ? 1 + i / 2 : 30 - (i - 1) / 2), response: "r" }));
    const run = async (options: SelfPlayOptions) => {
      const calls: GenerationBatch[] = [];
      const g = generator(options).on("batch", (b) => calls.push(b));
      return { rows: await collect(g, rows), calls };
    };
    const sorted = await run({ lengthSortedBatching: true });
    const unsorted = await run({ lengthSortedBatching: false });
    const oneByOne = await run({ lengthSortedBatching: false, batchSize: 1, sortWindowBatches: 1 });
    const windows = await run({ batchSize: 2, sortWindowBatches: 2 });
    const order = shuffledOrder(rows.length, 42);
    expect(sorted.rows.map((r) => r.real[0]!.content)).toEqual(order.map((i) => rows[i]!.prompt));
    for (const other of [unsorted, oneByOne, windows]) expect(other.rows).toEqual(sorted.rows);
    expect(oneByOne.calls).toHaveLength(12);
    expect(windows.calls.map((c) => c.rows)).toEqual([4, 4, 4]);
    expect(sorted.calls.map((c) => c.rows)).toEqual([12]);
    const promptTokens = (calls: GenerationBatch[]) => calls.reduce((sum, c) => sum + c.promptTokens, 0);
    expect(promptTokens(windows.calls)).toBe(promptTokens(sorted.calls));
    // The SFT rows too (any shapes, system and multi-turn prompts).
    expect(await collect(generator({ lengthSortedBatching: true }))).toEqual(await collect(generator({ lengthSortedBatching: false })));
  });

  test("EOS statistics: eosRate and meanGeneratedTokens of the summary", async () => {
    // "<|assistant|>" (id 5), which this model emits often, as EOS.
    const summary = await generator({ eosTokenIds: [5] }).run(SFT, freshDir());
    expect(summary.finishReasons.eos).toBeGreaterThan(0);
    expect(summary.eosRate).toBeCloseTo(summary.finishReasons.eos / N, 12);
    expect(summary.meanGeneratedTokens).toBeLessThan(MAX_NEW);
  });
});

describe("vocabularies", () => {
  test("a model whose vocabulary is larger than the tokenizer's (padded embeddings): unknown ids are left out of the answers", async () => {
    const { writeFixture } = await import("./fixtures.js");
    await writeFixture(path.join(root, "model-64"), "llama");
    const wide = await CausalLM.load(path.join(root, "model-64"));
    try {
      const g = new SelfPlayGenerator({ model: wide, tokenizer: tok, options: { maxNewTokens: MAX_NEW, batchSize: 4, eosTokenIds: [] } });
      const rows = await collect(g);
      expect(rows).toHaveLength(N);
      const order = shuffledOrder(N, 42);
      let unknown = 0;
      for (const [j, row] of rows.entries()) {
        const ids = tok.encode(tok.promptText(row.real.slice(0, -1)));
        const tokens = (await wide.generate([ids], { maxNewTokens: MAX_NEW, eosTokenIds: [] })).generations[0]!.tokens;
        const known = tokens.filter((t) => tok.idToToken(t) !== null);
        unknown += tokens.length - known.length;
        expect(row.real).toEqual(toSpinRow(SFT[order[j]!], { row: 0 }).real);
        expect(row.generated.at(-1)!.content).toBe(tok.decode(known, { skipSpecialTokens: true }).trimStart());
      }
      expect(unknown).toBeGreaterThan(0);
    } finally {
      wide.dispose();
    }
  });
});

describe("stop sequences", () => {
  test("stop sequences end answers and are removed from the text unless keepStopSequences", async () => {
    const dropped = generator({ stopSequences: ["?"] });
    let summary: GenerationSummary | null = null;
    dropped.on("done", (d) => (summary = d));
    const without = await collect(dropped);
    const kept = await collect(generator({ stopSequences: ["?"], keepStopSequences: true }));
    expect(summary!.finishReasons.stop).toBeGreaterThan(0);
    let stopped = 0;
    without.forEach((row, j) => {
      const a = row.generated.at(-1)!.content;
      const b = kept[j]!.generated.at(-1)!.content;
      expect(a).not.toContain("?");
      expect(b.indexOf("?")).toBe(b.includes("?") ? b.length - 1 : -1);
      if (b.endsWith("?")) stopped++;
      expect(a).toBe(b.endsWith("?") ? b.slice(0, -1).trimStart() : b);
    });
    expect(stopped).toBe(summary!.finishReasons.stop);
  });
});

describe("fractions", () => {
  test("fractions 0..3 of 3 rows, merged, equal the whole run byte for byte (sampled: each row seeded by its shuffled index)", async () => {
    const sampling: SelfPlayOptions = { doSample: true, topK: 0, seed: 11 };
    const whole = freshDir();
    await generator(sampling).run(SFT, whole);
    const wholeFile = path.join(whole, "train", "train-0.jsonl");
    const wholeRows = readJsonl(wholeFile);
    // Row j of the whole run is sampled with seed 11 + j.
    for (const j of [0, 4, 9]) {
      expect(wholeRows[j]!.generated.at(-1)!.content).toBe(await answerAlone(wholeRows[j]!.real.slice(0, -1), { doSample: true, seed: 11 + j }));
    }
    expect(wholeRows.map((r) => r.generated.at(-1)!.content)).not.toEqual(readJsonl(path.join((await greedyRun()).dir, "train", "train-0.jsonl")).map((r) => r.generated.at(-1)!.content));

    const parts = freshDir();
    // Different batch sizes per fraction: a row's output depends on neither.
    for (const k of [2, 0, 3, 1]) {
      const summary = await generator({ ...sampling, fracLen: 3, dataFrac: k, batchSize: k + 1 }).run(SFT, parts);
      expect(summary.rows).toBe(k === 3 ? 1 : 3);
      expect(existsSync(path.join(parts, "train", `train-${k}.jsonl`))).toBe(true);
    }
    const merged = await mergeFractions(parts, "train");
    expect(merged).toEqual({ file: path.join(parts, "train.jsonl"), rows: N, fractions: 4, complete: true });
    expect(readFileSync(merged.file)).toEqual(readFileSync(wholeFile));
    // Fraction k holds the shuffled rows [3k, 3k + 3).
    expect(readJsonl(path.join(parts, "train", "train-1.jsonl"))).toEqual(wholeRows.slice(3, 6));

    // A fraction past the end is an error, as is merging with a fraction missing.
    const past = await rejection<SpinNativeError>(generator({ fracLen: 3, dataFrac: 4 }).run(SFT, freshDir()));
    expect(past.code).toBe("INVALID_ARGUMENT");
    expect(past.message).toMatch(/fraction 4 is empty/);
    rmSync(path.join(parts, "train", "train-1.meta.json"));
    const gap = await rejection<SpinNativeError>(mergeFractions(parts, "train"));
    expect(gap.code).toBe("INVALID_ARGUMENT");
    expect(gap.message).toMatch(/fraction 1 .*missing/);
  });

  test("merging fractions of different settings or an incomplete fraction is refused; a partial set merges as incomplete", async () => {
    const dir = freshDir();
    await generator({ fracLen: 4, dataFrac: 0 }).run(SFT, dir);
    const first = await mergeFractions(dir, "train");
    expect(first).toMatchObject({ rows: 4, fractions: 1, complete: false });
    await generator({ fracLen: 4, dataFrac: 1, maxNewTokens: 5 }).run(SFT, dir);
    const mixed = await rejection<SpinNativeError>(mergeFractions(dir, "train"));
    expect(mixed.message).toMatch(/fraction 1 was generated from other inputs, settings/);
    // An interrupted fraction (meta says incomplete) is refused.
    const meta = path.join(dir, "train", "train-1.meta.json");
    writeFileSync(meta, JSON.stringify({ ...JSON.parse(readFileSync(meta, "utf8")), complete: false }));
    expect((await rejection<SpinNativeError>(mergeFractions(dir, "train"))).message).toMatch(/fraction 1 .*incomplete/);
  });
});

let greedyCache: { dir: string; bytes: Buffer } | null = null;
/** One uninterrupted greedy run with batchSize 2 and windows of 2 batches (shared by the resume tests). */
async function greedyRun(): Promise<{ dir: string; bytes: Buffer }> {
  if (greedyCache) return greedyCache;
  const dir = freshDir();
  await generator(RESUME_OPTIONS).run(SFT, dir);
  greedyCache = { dir, bytes: readFileSync(path.join(dir, "train", "train-0.jsonl")) };
  return greedyCache;
}
const RESUME_OPTIONS: SelfPlayOptions = { batchSize: 2, sortWindowBatches: 2 };

describe("resume", () => {
  /** A copy of the uninterrupted run's output folder, to damage. */
  async function copyOfRun(): Promise<{ dir: string; file: string; meta: string }> {
    const { dir: source } = await greedyRun();
    const dir = freshDir();
    mkdirSync(path.join(dir, "train"), { recursive: true });
    for (const name of readdirSync(path.join(source, "train"))) copyFileSync(path.join(source, "train", name), path.join(dir, "train", name));
    return { dir, file: path.join(dir, "train", "train-0.jsonl"), meta: path.join(dir, "train", "train-0.meta.json") };
  }

  test("after a crash (last rows lost, the last line torn) a re-run writes exactly the uninterrupted output", async () => {
    const { bytes } = await greedyRun();
    const { dir, file, meta } = await copyOfRun();
    // Keep 5 complete lines (inside the second window of 4 rows) and half of the 6th.
    const lines = bytes.toString("utf8").split("\n");
    const cut = lines.slice(0, 5).join("\n").length + 1 + Math.floor(lines[5]!.length / 2);
    truncateSync(file, cut);
    writeFileSync(meta, JSON.stringify({ ...JSON.parse(readFileSync(meta, "utf8")), complete: false }));
    const summary = await generator(RESUME_OPTIONS).run(SFT, dir);
    expect(summary).toMatchObject({ rows: N, resumedRows: 5, generatedRows: N - 5 });
    expect(readFileSync(file)).toEqual(bytes);
    expect(JSON.parse(readFileSync(meta, "utf8")).complete).toBe(true);

    // Running a complete fraction again generates nothing and changes nothing.
    const again = await generator(RESUME_OPTIONS).run(SFT, dir);
    expect(again).toMatchObject({ rows: N, resumedRows: N, generatedRows: 0, newTokens: 0 });
    expect(readFileSync(file)).toEqual(bytes);
  });

  test("a crash right after the meta file, and one at a line boundary, resume too; other batch sizes give the same rows", async () => {
    const { bytes } = await greedyRun();
    const first = await copyOfRun();
    rmSync(first.file);
    await generator(RESUME_OPTIONS).run(SFT, first.dir);
    expect(readFileSync(first.file)).toEqual(bytes);

    const second = await copyOfRun();
    const lines = bytes.toString("utf8").split("\n");
    truncateSync(second.file, lines.slice(0, 2).join("\n").length + 1);
    // Resuming with another batch layout (e.g. after running out of memory) is allowed.
    const summary = await generator({ batchSize: 1, lengthSortedBatching: false }).run(SFT, second.dir);
    expect(summary.resumedRows).toBe(2);
    expect(readFileSync(second.file)).toEqual(bytes);
  });

  test("output of other settings, inputs or weights is not resumed", async () => {
    const { dir } = await copyOfRun();
    const settings = await rejection<SpinNativeError>(generator({ ...RESUME_OPTIONS, maxNewTokens: 5 }).run(SFT, dir));
    expect(settings.code).toBe("INVALID_ARGUMENT");
    expect(settings.message).toMatch(/cannot resume fraction 0: it was generated from other inputs, settings or model weights/);
    const inputs = await rejection<SpinNativeError>(generator(RESUME_OPTIONS).run([...SFT.slice(0, -1), { prompt: "changed", response: "x" }], dir));
    expect(inputs.message).toMatch(/cannot resume/);
    const format = await rejection<SpinNativeError>(generator({ ...RESUME_OPTIONS, format: "parquet" }).run(SFT, dir));
    expect(format.message).toMatch(/it is jsonl, this run writes parquet/);
    // Other weights: a model with another seed.
    await writeCharModel(path.join(root, "model-2"), "llama", 99);
    const other = await CausalLM.load(path.join(root, "model-2"));
    try {
      const weights = await rejection<SpinNativeError>(new SelfPlayGenerator({ model: other, tokenizer: tok, options: { maxNewTokens: MAX_NEW, ...RESUME_OPTIONS } }).run(SFT, dir));
      expect(weights.message).toMatch(/cannot resume/);
    } finally {
      other.dispose();
    }
    // Output without its meta file is not taken over either.
    const orphan = await copyOfRun();
    rmSync(orphan.meta);
    expect((await rejection<SpinNativeError>(generator(RESUME_OPTIONS).run(SFT, orphan.dir))).message).toMatch(/without its train-0.meta.json/);
  });
});

describe("parquet", () => {
  test("parquet output (one file per flush, LIST<STRUCT<content, role>>) reads back with hyparquet as the jsonl rows; resume and merge", async () => {
    const { bytes } = await greedyRun();
    const expected = bytes
      .toString("utf8")
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as SpinRow);
    const dir = freshDir();
    const options: SelfPlayOptions = { ...RESUME_OPTIONS, format: "parquet" };
    const summary = await generator(options).run(SFT, dir);
    expect(summary.files.map((f) => path.basename(f))).toEqual(summary.files.map((_, i) => `train-0-${String(i).padStart(5, "0")}.parquet`));
    expect(summary.files.length).toBeGreaterThan(1);
    const read = async (file: string) => (await parquetReadObjects({ file: toArrayBuffer(readFileSync(file)) })) as unknown as SpinRow[];
    const all: SpinRow[] = [];
    for (const file of summary.files) all.push(...(await read(file)));
    expect(all).toEqual(expected);

    const schema = parquetMetadata(toArrayBuffer(readFileSync(summary.files[0]!))).schema;
    expect(schema.map((e) => e.name)).toEqual(["schema", "real", "list", "element", "content", "role", "generated", "list", "element", "content", "role"]);
    expect(schema[1]).toMatchObject({ converted_type: "LIST" });
    expect(schema[4]).toMatchObject({ type: "BYTE_ARRAY", converted_type: "UTF8" });

    // Resume: the last file lost (files are written atomically, so a crash loses whole files).
    rmSync(summary.files.at(-1)!);
    const resumed = await generator(options).run(SFT, dir);
    expect(resumed.generatedRows).toBeGreaterThan(0);
    expect(resumed.files).toEqual(summary.files);
    const again: SpinRow[] = [];
    for (const file of resumed.files) again.push(...(await read(file)));
    expect(again).toEqual(expected);

    const merged = await mergeFractions(dir, "train");
    expect(merged).toMatchObject({ file: path.join(dir, "train.parquet"), rows: N, fractions: 1, complete: true });
    expect(await read(merged.file)).toEqual(expected);
  });
});

describe("bad inputs", () => {
  test("empty input, a row without a user turn, an unknown row shape: INVALID_ARGUMENT naming the row", async () => {
    const empty = await rejection<SpinNativeError>(generator().run([], freshDir()));
    expect(empty.code).toBe("INVALID_ARGUMENT");
    expect(empty.message).toMatch(/no prompts/);

    const noUser = await rejection<SpinNativeError>(collect(generator({ inputName: "sft.jsonl" }), [SFT[0], { messages: [system("s"), assistant("a")] }]));
    expect(noUser.code).toBe("INVALID_ARGUMENT");
    expect(noUser.message).toMatch(/sft\.jsonl: row 1: the prompt has no user turn/);

    const shape = await rejection<SpinNativeError>(collect(generator(), [SFT[0], SFT[1], { question: "q" }]));
    expect(shape.code).toBe("INVALID_ARGUMENT");
    expect(shape.message).toMatch(/row 2/);
  });

  test("a prompt longer than the context minus maxNewTokens: an error naming the row, or a counted skip", async () => {
    // 10 template tokens + 45 characters > 64 positions − 12 new tokens.
    const long = { prompt: "a".repeat(45), response: "b" };
    const rows = [...SFT.slice(0, 4), long, ...SFT.slice(4)];
    const error = await rejection<SpinNativeError>(generator().run(rows, freshDir()));
    expect(error.code).toBe("INVALID_ARGUMENT");
    expect(error.message).toMatch(/row 4: the prompt is 55 tokens, more than the model's context of 64 positions minus maxNewTokens 12/);
    expect(error.message).toMatch(/skipTooLong/);

    const dir = freshDir();
    const summary = await generator({ skipTooLong: "skip" }).run(rows, dir);
    expect(summary).toMatchObject({ rows: N, skipped: 1, skippedRows: [4], generatedRows: N });
    const written = readJsonl(path.join(dir, "train", "train-0.jsonl"));
    expect(written).toHaveLength(N);
    expect(written.some((r) => r.real[0]!.content === long.prompt)).toBe(false);
    // A shorter maxNewTokens makes room for it.
    expect((await generator({ maxNewTokens: 8 }).run(rows, freshDir())).rows).toBe(N + 1);
  });

  test("bad options", () => {
    const bad = (options: SelfPlayOptions, pattern: RegExp) => {
      let error: unknown = null;
      try {
        generator(options);
      } catch (e) {
        error = e;
      }
      expect((error as SpinNativeError | null)?.code).toBe("INVALID_ARGUMENT");
      expect((error as Error).message).toMatch(pattern);
    };
    bad({ batchSize: 0 }, /batchSize/);
    bad({ dataFrac: 2 }, /dataFrac 2 needs fracLen/);
    bad({ fracLen: -1 }, /fracLen/);
    bad({ split: "../x" }, /split/);
    bad({ promptFormat: "alpaca" as "chat" }, /promptFormat/);
    bad({ skipTooLong: "truncate" as "skip" }, /skipTooLong/);
    bad({ format: "csv" as "jsonl" }, /format/);
  });
});

function toArrayBuffer(bytes: Buffer): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

/** shuffledOrder(10, 42): pinned so a change of the shuffle (which would re-cut every fraction) is caught. */
const GOLDEN_ORDER_10 = [0, 7, 3, 5, 2, 1, 8, 9, 4, 6];
