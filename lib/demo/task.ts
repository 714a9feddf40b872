// The demo task: two-number addition written as chat prompts ("37+45" → "82"), with a
// character-level tokenizer. Answers can be scored exactly, so the effect of SPIN on a
// deliberately under-trained model is measurable on a 2-core CPU in minutes.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

import type { SpinRow } from "../data/rows.js";
import { mulberry32 } from "../random.js";

/** Special tokens first (ids 0..5), then "\n", the digits and "+". */
const SPECIALS = ["<unk>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"];
const CHARACTERS = [..."\n0123456789+"];
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

export function writeDemoTokenizer(dir: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(demoTokenizerJson()));
  writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify(DEMO_TOKENIZER_CONFIG, null, 2));
}

export interface AdditionExample {
  prompt: string;
  answer: string;
}

/** Disjoint train and test sets of "a+b" with a, b in [0, 99]. */
export function additionSplits(trainSize: number, testSize: number, seed = 7): { train: AdditionExample[]; test: AdditionExample[] } {
  const random = mulberry32(seed);
  const all: AdditionExample[] = [];
  for (let a = 0; a < 100; a++) for (let b = 0; b < 100; b++) all.push({ prompt: `${a}+${b}`, answer: String(a + b) });
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  return { train: all.slice(0, trainSize), test: all.slice(trainSize, trainSize + testSize) };
}

/** An SFT row in UltraChat form ({messages}), which every spin-native reader accepts. */
export function sftRow(example: AdditionExample): { messages: { role: string; content: string }[] } {
  return { messages: [{ role: "user", content: example.prompt }, { role: "assistant", content: example.answer }] };
}

/** The same example as a SPIN row before generation (generated response empty). */
export function spinRow(example: AdditionExample): SpinRow {
  const user = { role: "user", content: example.prompt };
  return { real: [user, { role: "assistant", content: example.answer }], generated: [user, { role: "assistant", content: "" }] };
}

/** How θ0 was made (examples/demo/make-demo.ts) — and so how "continued SFT" continues. */
export const DEMO_SFT = {
  optim: "adamw" as const,
  learningRate: 3e-3,
  perDeviceTrainBatchSize: 32,
  warmupRatio: 0.05,
  lrSchedulerType: "linear" as const,
};

/** Updates of SFT that made θ0: deliberately too few (under-trained). */
export const DEMO_BASE_SFT_STEPS = 300;

export function readExamples(file: string): AdditionExample[] {
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => {
      const row = JSON.parse(line) as { messages: { role: string; content: string }[] };
      return { prompt: row.messages[0]!.content, answer: row.messages[1]!.content };
    });
}
