// Text generation over the native decode loop (native/generate.cc): options and their
// defaults from the checkpoint's generation_config.json (as transformers), text in and out
// through a tokenizer, and a streaming form.
import type { NativeGenerateOptions } from "../core/native-types.js";
import { SpinNativeError } from "../core/errors.js";
import type { CausalLM } from "./causal-lm.js";
import { native } from "../core/native.js";
import type { Tokenizer } from "./tokenizer.js";

export interface GenerateOptions {
  /** Needed for string prompts, string stop sequences and text output. */
  tokenizer?: Tokenizer;
  /** Default: generation_config max_new_tokens, else 256 (the original SPIN generator's). */
  maxNewTokens?: number;
  /** Sample instead of greedy decoding. Default: generation_config do_sample, else false. */
  doSample?: boolean;
  temperature?: number;
  /** 0 disables (transformers' default is 50 when sampling). */
  topK?: number;
  topP?: number;
  minP?: number;
  repetitionPenalty?: number;
  /** Default: generation_config eos_token_id, else config.json's. */
  eosTokenIds?: number[];
  /** A row also ends when its tokens end with one of these (strings are encoded without special tokens). */
  stopSequences?: (string | number[])[];
  /** Row i samples with seed + i (default 0) unless `seeds` gives one per row. */
  seed?: number;
  seeds?: number[];
  /**
   * Continuous batching: at most this many rows decode together (default: every prompt at
   * once). When a row finishes, the next waiting prompt takes its place between two steps.
   * Each row draws from its own generator, so a row's tokens do not depend on this setting or
   * on which rows share its steps (greedy rows up to float rounding of the batched products).
   */
  maxBatchSequences?: number;
  /**
   * Prompt tokens prefilled together, packed without padding, when rows join (default 4096).
   * A prompt longer than the budget is prefilled alone, in chunks of at most this many tokens.
   */
  prefillTokenBudget?: number;
}

/** One prompt's result. */
export interface Generation {
  /** New token ids (the EOS or stop tokens that ended the row included). */
  tokens: number[];
  /** Decoded new text: special tokens removed, leading whitespace stripped (as the original SPIN generator); null without a tokenizer. */
  text: string | null;
  finishReason: "eos" | "stop" | "length";
}

export interface GenerateResult {
  generations: Generation[];
  prefillSeconds: number;
  decodeSeconds: number;
  /** Of `decodeSeconds`, the time spent choosing the next tokens: repetition penalty, temperature, top-k/top-p/min-p and the draw (or argmax). */
  samplingSeconds: number;
  /** New tokens of all rows. */
  newTokens: number;
  /** New tokens per second of decoding. */
  tokensPerSecond: number;
}

/** A token as it is produced by {@link streamGenerate}. */
export interface StreamedToken {
  row: number;
  token: number;
}

function asNumber(value: unknown): number | undefined {
  return typeof value === "number" ? value : undefined;
}

function eosIds(value: unknown): number[] | undefined {
  if (typeof value === "number") return [value];
  if (Array.isArray(value) && value.every((v) => typeof v === "number")) return value as number[];
  return undefined;
}

function positiveInteger(value: number | undefined, name: string): number | undefined {
  if (value !== undefined && (!Number.isSafeInteger(value) || value < 1)) {
    throw new SpinNativeError(`generate: ${name} must be a positive integer, got ${String(value)}`, "INVALID_ARGUMENT", "generate");
  }
  return value;
}

/** The native options: given values, then generation_config.json, then transformers' defaults. */
function resolveOptions(model: CausalLM, rows: number, o: GenerateOptions): NativeGenerateOptions {
  const g = model.generationConfig ?? {};
  const doSample = o.doSample ?? (g.do_sample === true);
  const tokenizer = o.tokenizer;
  const stops = (o.stopSequences ?? []).map((s) => {
    if (typeof s !== "string") return s;
    if (!tokenizer) throw new SpinNativeError("generate: string stop sequences need a tokenizer", "INVALID_ARGUMENT", "generate");
    return tokenizer.encode(s, { addSpecialTokens: false });
  });
  const eos = o.eosTokenIds ?? eosIds(g.eos_token_id) ?? model.config.eosTokenIds;
  const seed = o.seed ?? 0;
  if (o.seeds && o.seeds.length !== rows) throw new SpinNativeError(`generate: ${o.seeds.length} seeds for ${rows} prompts`, "INVALID_ARGUMENT", "generate");
  for (const s of [seed, ...(o.seeds ?? [])]) {
    if (!Number.isSafeInteger(s) || s < 0) throw new SpinNativeError(`generate: seed ${s} is not a non-negative integer`, "INVALID_ARGUMENT", "generate");
  }
  return {
    maxNewTokens: o.maxNewTokens ?? asNumber(g.max_new_tokens) ?? 256,
    doSample,
    temperature: o.temperature ?? asNumber(g.temperature) ?? 1.0,
    topK: o.topK ?? asNumber(g.top_k) ?? (doSample ? 50 : 0),
    topP: o.topP ?? asNumber(g.top_p) ?? 1.0,
    minP: o.minP ?? asNumber(g.min_p) ?? 0,
    repetitionPenalty: o.repetitionPenalty ?? asNumber(g.repetition_penalty) ?? 1.0,
    eosTokenIds: eos,
    stopSequences: stops,
    seeds: o.seeds ?? Array.from({ length: rows }, (_, i) => seed + i),
    maxBatchSequences: positiveInteger(o.maxBatchSequences, "maxBatchSequences") ?? rows,
    prefillTokenBudget: positiveInteger(o.prefillTokenBudget, "prefillTokenBudget") ?? 4096,
  };
}

function promptIds(prompts: (string | number[])[], tokenizer: Tokenizer | undefined): number[][] {
  if (prompts.length === 0) throw new SpinNativeError("generate: no prompts", "INVALID_ARGUMENT", "generate");
  return prompts.map((p, i) => {
    if (typeof p !== "string") return p;
    if (!tokenizer) throw new SpinNativeError(`generate: prompt ${i} is text, which needs a tokenizer`, "INVALID_ARGUMENT", "generate");
    // Prompts are rendered text (e.g. a chat template): no BOS unless the text has it.
    return tokenizer.encode(p, { addSpecialTokens: false });
  });
}

/** Generates for every prompt on a worker thread, with continuous batching (GenerateOptions.maxBatchSequences). */
export async function generate(model: CausalLM, prompts: (string | number[])[], options: GenerateOptions = {}, onTokens?: (rows: number[], tokens: number[]) => void): Promise<GenerateResult> {
  const ids = promptIds(prompts, options.tokenizer);
  const resolved = resolveOptions(model, ids.length, options);
  const out = await native.generate(model.nativeHandle, ids, resolved, onTokens);
  const tokenizer = options.tokenizer;
  // A model's vocabulary can be padded beyond its tokenizer's (Qwen2): such ids decode to nothing, as in transformers.
  const decodable = (tokens: number[]) => tokens.filter((id) => tokenizer!.idToToken(id) !== null);
  const generations = out.tokens.map((tokens, i) => ({
    tokens,
    text: tokenizer ? tokenizer.decode(decodable(tokens), { skipSpecialTokens: true }).trimStart() : null,
    finishReason: out.finish[i]!,
  }));
  const newTokens = out.tokens.reduce((sum, t) => sum + t.length, 0);
  return { generations, prefillSeconds: out.prefillSeconds, decodeSeconds: out.decodeSeconds, samplingSeconds: out.samplingSeconds, newTokens, tokensPerSecond: newTokens / Math.max(out.decodeSeconds, 1e-9) };
}

/** The tokens of a generation as they are produced; the iterator ends when every row has. */
export async function* streamGenerate(model: CausalLM, prompts: (string | number[])[], options: GenerateOptions = {}): AsyncGenerator<StreamedToken, GenerateResult> {
  const queue: StreamedToken[] = [];
  let delivered = 0;
  let wake: (() => void) | null = null;
  let finished = false;
  let failure: unknown = null;
  let result: GenerateResult | null = null;
  generate(model, prompts, options, (rows, tokens) => {
    rows.forEach((row, i) => queue.push({ row, token: tokens[i]! }));
    delivered += rows.length;
    wake?.();
  }).then(
    (r) => {
      result = r;
      finished = true;
      wake?.();
    },
    (error: unknown) => {
      failure = error;
      finished = true;
      wake?.();
    },
  );
  // The promise can settle before the last token callbacks arrive: wait for all of them.
  const complete = () => finished && (failure !== null || (result !== null && delivered >= (result as GenerateResult).newTokens));
  for (;;) {
    while (queue.length > 0) yield queue.shift()!;
    if (complete()) break;
    await new Promise<void>((resolve) => (wake = resolve));
    wake = null;
  }
  while (queue.length > 0) yield queue.shift()!;
  if (failure) throw failure;
  return result!;
}
