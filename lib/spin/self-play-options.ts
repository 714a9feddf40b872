// SelfPlayGenerator's options (docs/method.md, "Generation"): their types, defaults (the
// original generate.py's where it had the option) and checks, resolved once per generator.
import { SpinNativeError } from "../core/errors.js";
import { type NumberRule, describeRule, fitsRule, showValue } from "../core/validate.js";
import type { RowLocation } from "../data/rows.js";
import type { GenerateOptions } from "../model/generation.js";
import type { SpinTextOptions, Tokenizer } from "../model/tokenizer.js";

const CALL = "SelfPlayGenerator";

function invalid(message: string): SpinNativeError {
  return new SpinNativeError(message, "INVALID_ARGUMENT", CALL);
}

/** Options of {@link SelfPlayGenerator}. Defaults are the original generate.py's where it had the option. */
/**
 * Sampling options are model.generate's (unset ones come from the checkpoint's generation
 * config, greedy by default), as are eosTokenIds and stopSequences.
 */
export interface SelfPlayOptions
  extends Pick<GenerateOptions, "doSample" | "temperature" | "topK" | "topP" | "minP" | "repetitionPenalty" | "eosTokenIds" | "stopSequences"> {
  /** Rows decoding together, with continuous batching (the original's per-device batch_size). Default 16. */
  batchSize?: number;
  /** Which fraction to generate (the original's data_frac). Default 0. */
  dataFrac?: number;
  /** Rows per fraction; 0 = every row in one fraction (the original's frac_len). Default 0. */
  fracLen?: number;
  /** Output subfolder and file prefix (the original's split). Default "train". */
  split?: string;
  /** Default 256 (the original's max_new_tokens). */
  maxNewTokens?: number;
  /**
   * "chat" (default): the tokenizer's chat template over the prompt messages with the
   * generation prompt ({@link Tokenizer.promptText}) — the text SPIN trains on.
   * "spin-instruction": the original generator's `"### Instruction: {x}\n\n### Response: "`,
   * x = the content of the last user message.
   */
  promptFormat?: "chat" | "spin-instruction";
  /** Passed to {@link Tokenizer.promptText} for promptFormat "chat" (template choice, variables). */
  promptTextOptions?: SpinTextOptions;
  /** Row seed = seed + the row's index in the shuffled order (the same in every fraction and batch). Default 0. */
  seed?: number;
  /**
   * Keep the stop sequence that ended a row at the end of its text. Default false: it is
   * removed (as vLLM does), e.g. a "### Instruction" the model starts after its answer.
   */
  keepStopSequences?: boolean;
  /** Within a window, start the longest prompts first (results stay in input order). Default true. */
  lengthSortedBatching?: boolean;
  /** A window, one generate call with continuous batching, holds batchSize × this many prompts. Default 8. */
  sortWindowBatches?: number;
  /**
   * Prompts with more than (the model's context − maxNewTokens) tokens: "error" (default)
   * throws naming the row; "skip" leaves them out and counts them.
   */
  skipTooLong?: "error" | "skip";
  /** Output format of {@link SelfPlayGenerator.run}. Default "jsonl". */
  format?: "jsonl" | "parquet";
  /** Seed of the prompt shuffle. Default 42 (the original's). */
  shuffleSeed?: number;
  /** Names the input in error messages (e.g. its file). */
  inputName?: string;
  /**
   * Where input row i came from (e.g. its file and line, for rows read from several files),
   * named by errors about the row. Default: `{ file: inputName, row: i }`.
   */
  rowLocation?: (row: number) => RowLocation;
}


/** The options with every default filled in. */
export interface ResolvedSelfPlayOptions {
  batchSize: number;
  dataFrac: number;
  fracLen: number;
  split: string;
  maxNewTokens: number;
  promptFormat: "chat" | "spin-instruction";
  promptTextOptions: SpinTextOptions;
  sampling: Pick<GenerateOptions, "doSample" | "temperature" | "topK" | "topP" | "minP" | "repetitionPenalty" | "eosTokenIds" | "stopSequences">;
  seed: number;
  keepStopSequences: boolean;
  /** Token ids of the stop sequences (as model.generate encodes them). */
  stopIds: number[][];
  lengthSortedBatching: boolean;
  sortWindowBatches: number;
  skipTooLong: "error" | "skip";
  format: "jsonl" | "parquet";
  shuffleSeed: number;
  inputName: string;
  rowLocation: (row: number) => RowLocation;
}

/** Sampling options' ranges (model.generate's; native/sampling.cc refuses the same, but only once decoding starts). */
const SAMPLING_RULES: Record<"temperature" | "topK" | "topP" | "minP" | "repetitionPenalty", NumberRule> = {
  temperature: { min: 0 },
  topK: { integer: true, min: 0 },
  topP: { min: 0, max: 1, minOpen: true },
  minP: { min: 0, max: 1 },
  repetitionPenalty: { min: 0, minOpen: true },
};

/** Checks the sampling options, the token ids and the flags: every value of the wrong type or out of range, naming the option. */
function checkSampling(o: SelfPlayOptions): void {
  for (const [name, rule] of Object.entries(SAMPLING_RULES) as [keyof typeof SAMPLING_RULES, NumberRule][]) {
    const value = o[name];
    if (value !== undefined && !fitsRule(value, rule)) throw invalid(`${CALL}: ${name} must be ${describeRule(rule)}, got ${showValue(value)}`);
  }
  if (o.doSample === true && o.temperature === 0) throw invalid(`${CALL}: temperature must be > 0 when doSample is true, got 0`);
  for (const name of ["doSample", "keepStopSequences", "lengthSortedBatching"] as const) {
    if (o[name] !== undefined && typeof o[name] !== "boolean") throw invalid(`${CALL}: ${name} must be true or false, got ${showValue(o[name])}`);
  }
  const tokenIds = (value: unknown) => Array.isArray(value) && value.every((id) => Number.isSafeInteger(id) && (id as number) >= 0);
  // An empty eosTokenIds is allowed: rows then end at maxNewTokens or a stop sequence.
  if (o.eosTokenIds !== undefined && !tokenIds(o.eosTokenIds)) throw invalid(`${CALL}: eosTokenIds must be a list of token ids (integers ≥ 0), got ${showValue(o.eosTokenIds)}`);
  if (o.stopSequences !== undefined && !(Array.isArray(o.stopSequences) && o.stopSequences.every((q) => (typeof q === "string" && q !== "") || (tokenIds(q) && q.length > 0)))) {
    throw invalid(`${CALL}: stopSequences must be a list of non-empty strings or token id lists, got ${showValue(o.stopSequences)}`);
  }
  if (o.inputName !== undefined && typeof o.inputName !== "string") throw invalid(`${CALL}: inputName must be a string, got ${showValue(o.inputName)}`);
  if (o.rowLocation !== undefined && typeof o.rowLocation !== "function") throw invalid(`${CALL}: rowLocation must be a function`);
}

const SELF_PLAY_OPTION_KEYS: readonly (keyof SelfPlayOptions)[] = [
  "batchSize", "dataFrac", "fracLen", "split", "maxNewTokens", "promptFormat", "promptTextOptions", "seed",
  "keepStopSequences", "lengthSortedBatching", "sortWindowBatches", "skipTooLong", "format", "shuffleSeed",
  "inputName", "rowLocation", "doSample", "temperature", "topK", "topP", "minP", "repetitionPenalty",
  "eosTokenIds", "stopSequences",
];

/** Fills defaults and checks every option, naming the one that is wrong. */
export function resolveSelfPlayOptions(o: SelfPlayOptions, tokenizer: Tokenizer): ResolvedSelfPlayOptions {
  const int = (name: keyof SelfPlayOptions, value: number | undefined, fallback: number, min: number): number => {
    const v = value ?? fallback;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) throw invalid(`${CALL}: ${name} must be an integer >= ${min}, got ${String(value)}`);
    return v;
  };
  const oneOf = <T extends string>(name: keyof SelfPlayOptions, value: T | undefined, allowed: readonly T[]): T => {
    const v = value ?? allowed[0]!;
    if (!allowed.includes(v)) throw invalid(`${CALL}: ${name} must be ${allowed.map((a) => `"${a}"`).join(" or ")}, got ${JSON.stringify(value)}`);
    return v;
  };
  // A misspelt option would otherwise be ignored and its default used in silence.
  for (const key of Object.keys(o)) {
    if (!SELF_PLAY_OPTION_KEYS.includes(key as keyof SelfPlayOptions)) {
      throw invalid(`${CALL}: unknown option '${key}'; known: ${SELF_PLAY_OPTION_KEYS.join(", ")}`);
    }
  }
  checkSampling(o);
  const split = o.split ?? "train";
  if (typeof split !== "string" || !/^[A-Za-z0-9_][A-Za-z0-9_.]*$/.test(split)) {
    throw invalid(`${CALL}: split must be a plain name (letters, digits, '_', '.'), got ${JSON.stringify(o.split)}`);
  }
  const fracLen = int("fracLen", o.fracLen, 0, 0);
  const dataFrac = int("dataFrac", o.dataFrac, 0, 0);
  if (fracLen === 0 && dataFrac !== 0) throw invalid(`${CALL}: dataFrac ${dataFrac} needs fracLen > 0 (fracLen 0 is one fraction holding every row)`);
  return {
    batchSize: int("batchSize", o.batchSize, 16, 1),
    dataFrac,
    fracLen,
    split,
    maxNewTokens: int("maxNewTokens", o.maxNewTokens, 256, 1),
    promptFormat: oneOf("promptFormat", o.promptFormat, ["chat", "spin-instruction"] as const),
    promptTextOptions: o.promptTextOptions ?? {},
    sampling: {
      doSample: o.doSample,
      temperature: o.temperature,
      topK: o.topK,
      topP: o.topP,
      minP: o.minP,
      repetitionPenalty: o.repetitionPenalty,
      eosTokenIds: o.eosTokenIds,
      stopSequences: o.stopSequences,
    },
    seed: int("seed", o.seed, 0, 0),
    keepStopSequences: o.keepStopSequences ?? false,
    stopIds: (o.stopSequences ?? []).map((q) => (typeof q === "string" ? tokenizer.encode(q, { addSpecialTokens: false }) : [...q])),
    lengthSortedBatching: o.lengthSortedBatching ?? true,
    sortWindowBatches: int("sortWindowBatches", o.sortWindowBatches, 8, 1),
    skipTooLong: oneOf("skipTooLong", o.skipTooLong, ["error", "skip"] as const),
    format: oneOf("format", o.format, ["jsonl", "parquet"] as const),
    shuffleSeed: int("shuffleSeed", o.shuffleSeed, 42, 0),
    inputName: o.inputName ?? "rows",
    rowLocation: o.rowLocation ?? ((row) => ({ file: o.inputName ?? "rows", row })),
  };
}
