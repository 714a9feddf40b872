// The demo task: a mix of two character-level tasks written as chat prompts —
//   reversal  "reverse qbkmz"  → "zmkbq"   (5 letters)
//   sorting   "sort 315926"    → "123569"  (6 digits)
// with a one-token-per-character tokenizer. Answers can be scored exactly, and a model
// stopped partway through learning reversal gets about half of them right and errs on the rest
// by a letter or two: errors close to the ground truth, which the SPIN loss can act on. (Two-digit
// addition, an earlier demo's task, gave SPIN nothing: θ0 got the units digit at chance, and
// SPIN only moved that wrong answer around.)
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

import { SpinNativeError } from "../../core/errors.js";
import type { SpinRow } from "../../data/rows.js";
import { mulberry32 } from "../../core/random.js";

/** Special tokens first (ids 0..5), then "\n", the digits, the letters and " ". */
const SPECIALS = ["<unk>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"];
const LETTERS = "abcdefghijklmnopqrstuvwxyz";
const CHARACTERS = [..."\n0123456789", ...LETTERS, ..." "];
export const DEMO_VOCAB_SIZE = SPECIALS.length + CHARACTERS.length;

/** tokenizer.json: one token per character (BPE without merges) plus the chat markers. */
export function demoTokenizerJson(): object {
  const vocab: Record<string, number> = {};
  SPECIALS.forEach((token, id) => (vocab[token] = id));
  CHARACTERS.forEach((ch, i) => (vocab[ch] = SPECIALS.length + i));
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: SPECIALS.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: { type: "Fuse" },
    model: { type: "BPE", dropout: null, unk_token: "<unk>", continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: [] },
  };
}

/** tokenizer_config.json: no chat_template, so the Zephyr template of the original applies. */
export const DEMO_TOKENIZER_CONFIG = { eos_token: "</s>", unk_token: "<unk>", pad_token: "<pad>", model_max_length: 64 };

/** Writes the demo's tokenizer.json and tokenizer_config.json into `dir`. */
export function writeDemoTokenizer(dir: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(demoTokenizerJson()));
  writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify(DEMO_TOKENIZER_CONFIG, null, 2));
}

export const DEMO_TASKS = ["reverse", "sort"] as const;
export type DemoTask = (typeof DEMO_TASKS)[number];

export interface DemoExample {
  task: DemoTask;
  prompt: string;
  answer: string;
}

/** The task of a prompt, from its first word. */
export function taskOf(prompt: string): DemoTask {
  const word = prompt.split(" ", 1)[0];
  const task = DEMO_TASKS.find((t) => t === word);
  if (!task) throw new SpinNativeError(`demo: "${prompt}" is not a prompt of the demo's tasks (${DEMO_TASKS.join(", ")})`, "INVALID_ARGUMENT", "demo");
  return task;
}

/** Lengths of the instances (min, max). Fixed lengths: θ0's errors are wrong letters, not wrong lengths. */
const LENGTHS: Record<DemoTask, [number, number]> = { reverse: [5, 5], sort: [6, 6] };

function example(task: DemoTask, random: () => number): DemoExample {
  const [min, max] = LENGTHS[task];
  const n = min + Math.floor(random() * (max - min + 1));
  const pick = (alphabet: string) => Array.from({ length: n }, () => alphabet[Math.floor(random() * alphabet.length)]!).join("");
  if (task === "reverse") {
    const word = pick(LETTERS);
    return { task, prompt: `reverse ${word}`, answer: [...word].reverse().join("") };
  }
  const digits = pick("0123456789");
  return { task, prompt: `sort ${digits}`, answer: [...digits].sort().join("") };
}

/**
 * Disjoint train and test sets with the same number of examples of each task (no prompt
 * appears twice or in both sets).
 */
export function demoSplits(trainPerTask: number, testPerTask: number, seed = 7): { train: DemoExample[]; test: DemoExample[] } {
  const random = mulberry32(seed);
  const seen = new Set<string>();
  const draw = (task: DemoTask, n: number) => {
    const out: DemoExample[] = [];
    while (out.length < n) {
      const e = example(task, random);
      if (seen.has(e.prompt)) continue;
      seen.add(e.prompt);
      out.push(e);
    }
    return out;
  };
  const train: DemoExample[] = [];
  const test: DemoExample[] = [];
  for (const task of DEMO_TASKS) {
    train.push(...draw(task, trainPerTask));
    test.push(...draw(task, testPerTask));
  }
  // Shuffle the tasks together: a slice of the rows (the demo's SPIN prompts) holds both.
  const shuffle = (xs: DemoExample[]) => {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [xs[i], xs[j]] = [xs[j]!, xs[i]!];
    }
    return xs;
  };
  return { train: shuffle(train), test: shuffle(test) };
}

/** An SFT row in UltraChat form ({messages}), which every spin-native reader accepts. */
export function sftRow(example: DemoExample): { messages: { role: string; content: string }[] } {
  return { messages: [{ role: "user", content: example.prompt }, { role: "assistant", content: example.answer }] };
}

/** The same example as a SPIN row before generation (generated response empty). */
export function spinRow(example: DemoExample): SpinRow {
  const user = { role: "user", content: example.prompt };
  return { real: [user, { role: "assistant", content: example.answer }], generated: [user, { role: "assistant", content: "" }] };
}

/** How θ0 was made (examples/demo/make-demo.ts, with maxLength 64 and maxPromptLength 48). */
export const DEMO_SFT = {
  optim: "adamw" as const,
  learningRate: 1e-3,
  perDeviceTrainBatchSize: 64,
  warmupRatio: 0.05,
  lrSchedulerType: "linear" as const,
};

/**
 * Updates of SFT that made θ0: deliberately too few. At 200 (12 800 rows, under one epoch of
 * the 20 000) θ0 sorts but reverses only about half of the words; reversal is learnt between
 * 150 updates (none right) and 300 (nearly all).
 */
export const DEMO_BASE_SFT_STEPS = 200;

/** θ0's SFT data per task (make-demo.ts); the first {@link DEMO_SHIPPED_TRAIN_ROWS} rows are shipped. */
export const DEMO_SFT_ROWS_PER_TASK = 10_000;

/** Rows of θ0's SFT data shipped in examples/demo/data/train.jsonl (the SPIN prompts come from them). */
export const DEMO_SHIPPED_TRAIN_ROWS = 2_000;

/** Reads a demo split (chat rows as written by make-demo.ts), naming the file and line of a bad row. */
export function readExamples(file: string): DemoExample[] {
  const examples: DemoExample[] = [];
  readFileSync(file, "utf8")
    .split("\n")
    .forEach((line, i) => {
      if (line.trim() === "") return;
      try {
        const row = JSON.parse(line) as { messages?: { role: string; content: string }[] };
        const [user, assistant] = row.messages ?? [];
        if (!user || !assistant) throw new Error("a demo row needs a user and an assistant message");
        examples.push({ task: taskOf(user.content), prompt: user.content, answer: assistant.content });
      } catch (error) {
        throw new SpinNativeError(`${file}:${i + 1}: ${(error as Error).message}`, "INVALID_ARGUMENT", "demo");
      }
    });
  return examples;
}
