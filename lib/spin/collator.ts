// The SPIN data collator: SPIN rows → token ids, attention mask and labels of one forward over
// [real rows; generated rows], exactly as docs/method.md ("Tokenization and truncation") says —
// which is what the original's TRL 0.7 DPO fork did in `tokenize_row` and its collator.
import { tensor } from "../core/create.js";
import { SpinNativeError } from "../core/errors.js";
import type { Tensor } from "../core/tensor.js";
import type { ChatMessage, SpinTextOptions, Tokenizer } from "../model/tokenizer.js";
import { type SpinRow, splitPrompt } from "../data/rows.js";

/** The label of positions that do not count in the loss (prompt and padding), as in PyTorch. */
export const IGNORE_INDEX = -100;

/** What to do with a pair whose response has no tokens left after truncation. */
export type EmptyResponsePolicy = "error" | "skip";

/** Options of {@link SpinCollator}. */
export interface SpinCollatorOptions {
  /** The tokenizer; it needs an EOS token (appended to every response, and the pad when there is no pad token). */
  tokenizer: Tokenizer;
  /** Longest prompt + response, in tokens. Default 1024 (the original configs). */
  maxLength?: number;
  /** Prompt tokens kept (the last ones) when prompt + response is too long. Default 512. */
  maxPromptLength?: number;
  /**
   * A pair whose real or generated response has zero tokens after truncation (possible when
   * maxLength − maxPromptLength ≤ 0): `"error"` (default) throws, `"skip"` drops the pair and
   * reports it in {@link SpinBatch.skipped}.
   */
  onEmptyResponse?: EmptyResponsePolicy;
  /** Passed to {@link Tokenizer.promptText} / {@link Tokenizer.responseText} (template choice, empty-system rule, variables). */
  textOptions?: SpinTextOptions;
}

/** A pair dropped by the `"skip"` policy: its row index and why. */
export interface SkippedRow {
  row: number;
  reason: string;
}

/** One SPIN micro-batch of B pairs. */
export interface SpinBatch {
  /** `[2B, T]` int64: the B real sequences first, then the B generated ones in the same order; right padded with the pad id. */
  ids: Tensor;
  /** `[2B, T]` int64: 1 on tokens, 0 on the right padding. */
  attentionMask: Tensor;
  /** `[2B, T]` int64: −100 on prompt and padding; response tokens (the appended EOS included) keep their ids (unshifted). */
  labels: Tensor;
  /** `[B]` whether the generated response's token ids (after truncation, EOS included) equal the real one's — such pairs get zero gradient. */
  identical: boolean[];
  /** `[B]` tokens of each generated response in the batch (after truncation, EOS included). */
  generatedTokens: number[];
  /** `[B]` the input row index of each pair (skipped rows removed). */
  rowIndices: number[];
  /** Pairs dropped by the `"skip"` policy. */
  skipped: SkippedRow[];
}

/** A supervised fine-tuning micro-batch (only the real responses). */
export interface SftBatch {
  /** `[B, T]` int64, right padded with the pad id. */
  ids: Tensor;
  /** `[B, T]` int64: 1 on tokens, 0 on padding. */
  attentionMask: Tensor;
  /** `[B, T]` int64: −100 on prompt and padding, response ids (EOS included) elsewhere. */
  labels: Tensor;
  /** `[B]` the input row index of each sequence (skipped rows removed). */
  rowIndices: number[];
  /** Rows dropped by the `"skip"` policy. */
  skipped: SkippedRow[];
}

/** A pair after tokenization and truncation. */
interface TokenizedRow {
  prompt: number[];
  responses: number[][];
}

function invalid(message: string, call: string): SpinNativeError {
  return new SpinNativeError(`${call}: ${message}`, "INVALID_ARGUMENT", call);
}

function checkCount(value: unknown, name: string, min: number, call: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min) {
    throw invalid(`${name} must be an integer ≥ ${min}, got ${String(value)}`, call);
  }
  return value;
}

function sameIds(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function samePrompt(a: readonly ChatMessage[], b: readonly ChatMessage[]): boolean {
  return a.length === b.length && a.every((m, i) => m.role === b[i]!.role && m.content === b[i]!.content);
}

/**
 * Turns SPIN rows into model inputs, with the semantics of docs/method.md ("Chat templates",
 * "Tokenization and truncation"):
 *
 * - prompt text = {@link Tokenizer.promptText} of the prompt messages (chat template with the
 *   generation prompt; an empty system message first when the template wants one) — for
 *   Zephyr `"<|system|>\n</s>\n<|user|>\n{x}</s>\n<|assistant|>\n"`;
 * - response text = {@link Tokenizer.responseText} — for Zephyr `"{y}</s>\n"`;
 * - the prompt and each response are tokenized separately without added special tokens, and one
 *   EOS id is appended to each response;
 * - truncation (TRL 0.7's `tokenize_row`, "keep_end"): if prompt + the longer response >
 *   maxLength, keep the last maxPromptLength prompt tokens; if still too long, cut both
 *   responses to their first maxLength − maxPromptLength tokens;
 * - labels −100 over prompt and padding; right padding with the pad id (the EOS id when the
 *   tokenizer has no pad token); T = the longest sequence of the batch (no padding to maxLength).
 *
 * The prompt is taken from `real`; `generated` must carry the same prompt.
 */
export class SpinCollator {
  readonly tokenizer: Tokenizer;
  readonly maxLength: number;
  readonly maxPromptLength: number;
  readonly onEmptyResponse: EmptyResponsePolicy;
  readonly textOptions: SpinTextOptions;
  /** The id appended to every response. */
  readonly eosTokenId: number;
  /** The id of the right padding. */
  readonly padTokenId: number;

  /**
   * @throws SpinNativeError `INVALID_ARGUMENT` for a tokenizer without EOS token, lengths that
   *   are not positive integers, or an unknown policy.
   */
  constructor(options: SpinCollatorOptions) {
    const call = "SpinCollator";
    if (typeof options !== "object" || options === null) throw new TypeError(`${call}: options must be an object`);
    const { tokenizer, maxLength = 1024, maxPromptLength = 512, onEmptyResponse = "error", textOptions = {} } = options;
    if (typeof tokenizer !== "object" || tokenizer === null || typeof tokenizer.encode !== "function") {
      throw new TypeError(`${call}: options.tokenizer must be a Tokenizer`);
    }
    this.maxLength = checkCount(maxLength, "maxLength", 1, call);
    // At least one prompt token: the first response token is predicted from the one before it.
    this.maxPromptLength = checkCount(maxPromptLength, "maxPromptLength", 1, call);
    if (onEmptyResponse !== "error" && onEmptyResponse !== "skip") {
      throw invalid(`onEmptyResponse must be "error" or "skip", got ${String(onEmptyResponse)}`, call);
    }
    if (tokenizer.eosTokenId === null) {
      throw invalid("the tokenizer has no EOS token (eos_token in tokenizer_config.json); SPIN appends one to every response", call);
    }
    this.tokenizer = tokenizer;
    this.onEmptyResponse = onEmptyResponse;
    this.textOptions = textOptions;
    this.eosTokenId = tokenizer.eosTokenId;
    this.padTokenId = tokenizer.padTokenId ?? tokenizer.eosTokenId;
  }

  /**
   * Prompt and response token ids of one conversation pair or single conversation, truncated.
   * `conversations[0]` supplies the prompt; the others must share it.
   */
  #tokenize(conversations: readonly ChatMessage[][], names: readonly string[], row: number, call: string): TokenizedRow {
    const splits = conversations.map((c, i) => {
      if (!Array.isArray(c)) throw invalid(`row ${row}: '${names[i]}' must be a list of messages`, call);
      try {
        return splitPrompt(c);
      } catch (e) {
        if (e instanceof SpinNativeError) throw invalid(`row ${row}: '${names[i]}': ${e.message}`, call);
        throw e;
      }
    });
    const promptMessages = splits[0]!.prompt;
    for (let i = 1; i < splits.length; i++) {
      if (!samePrompt(promptMessages, splits[i]!.prompt)) {
        throw invalid(`row ${row}: '${names[0]}' and '${names[i]}' must share the same prompt`, call);
      }
    }
    const tok = this.tokenizer;
    let prompt = tok.encode(tok.promptText(promptMessages, this.textOptions), { addSpecialTokens: false });
    let responses = splits.map((s) => [
      ...tok.encode(tok.responseText(promptMessages, s.response, this.textOptions), { addSpecialTokens: false }),
      this.eosTokenId,
    ]);
    // TRL 0.7 tokenize_row: the second test reuses the longer length measured before truncation.
    const longer = Math.max(...responses.map((r) => r.length));
    if (prompt.length + longer > this.maxLength) prompt = prompt.slice(-this.maxPromptLength);
    if (prompt.length + longer > this.maxLength) {
      const keep = Math.max(0, this.maxLength - this.maxPromptLength);
      responses = responses.map((r) => r.slice(0, keep));
    }
    return { prompt, responses };
  }

  /** Tokenizes every row; applies the empty-response policy. */
  #tokenizeAll(
    rows: readonly SpinRow[],
    rowIndices: readonly number[] | undefined,
    fields: readonly ("real" | "generated")[],
    call: string,
  ): { kept: TokenizedRow[]; indices: number[]; skipped: SkippedRow[] } {
    if (!Array.isArray(rows)) throw new TypeError(`${call}: rows must be an array of SpinRow`);
    if (rows.length === 0) throw invalid("no rows to collate", call);
    if (rowIndices !== undefined) {
      if (!Array.isArray(rowIndices) || rowIndices.length !== rows.length) {
        throw invalid(`rowIndices must be an array as long as rows (${rows.length}), got ${Array.isArray(rowIndices) ? rowIndices.length : typeof rowIndices}`, call);
      }
      for (const [i, r] of rowIndices.entries()) checkCount(r, `rowIndices[${i}]`, 0, call);
    }
    const kept: TokenizedRow[] = [];
    const indices: number[] = [];
    const skipped: SkippedRow[] = [];
    rows.forEach((row, i) => {
      const index = rowIndices?.[i] ?? i;
      if (typeof row !== "object" || row === null) throw invalid(`row ${index}: expected a SpinRow {real, generated}`, call);
      const t = this.#tokenize(
        fields.map((f) => row[f]),
        fields,
        index,
        call,
      );
      const empty = t.responses.findIndex((r) => r.length === 0);
      if (empty >= 0) {
        const reason =
          `the ${fields[empty]} response has no tokens left after truncation ` +
          `(prompt ${t.prompt.length} tokens, maxLength ${this.maxLength}, maxPromptLength ${this.maxPromptLength}: ` +
          `responses are cut to maxLength − maxPromptLength = ${this.maxLength - this.maxPromptLength})`;
        if (this.onEmptyResponse === "error") {
          throw invalid(`row ${index}: ${reason}; raise maxLength or lower maxPromptLength, or pass onEmptyResponse: "skip"`, call);
        }
        skipped.push({ row: index, reason });
        return;
      }
      kept.push(t);
      indices.push(index);
    });
    if (kept.length === 0) {
      throw invalid(`all ${rows.length} rows were skipped (empty responses after truncation), e.g. row ${skipped[0]!.row}: ${skipped[0]!.reason}`, call);
    }
    return { kept, indices, skipped };
  }

  /** Right-padded `[N, T]` int64 tensors of sequences given as (prompt, response) parts. */
  #pad(parts: readonly { prompt: number[]; response: number[] }[]): { ids: Tensor; attentionMask: Tensor; labels: Tensor } {
    const n = parts.length;
    const width = Math.max(...parts.map((p) => p.prompt.length + p.response.length));
    const ids = new BigInt64Array(n * width).fill(BigInt(this.padTokenId));
    const mask = new BigInt64Array(n * width);
    const labels = new BigInt64Array(n * width).fill(BigInt(IGNORE_INDEX));
    parts.forEach(({ prompt, response }, r) => {
      let at = r * width;
      for (const id of prompt) {
        ids[at] = BigInt(id);
        mask[at] = 1n;
        at++;
      }
      for (const id of response) {
        ids[at] = BigInt(id);
        mask[at] = 1n;
        labels[at] = BigInt(id);
        at++;
      }
    });
    const shape = [n, width];
    return {
      ids: tensor(ids, { shape }),
      attentionMask: tensor(mask, { shape }),
      labels: tensor(labels, { shape }),
    };
  }

  /**
   * Collates B pairs into one `[2B, T]` batch: the real sequences first, then the generated ones.
   *
   * @param rows - The pairs (e.g. from {@link toSpinRow}).
   * @param rowIndices - The dataset index of each row, for error messages and
   *   {@link SpinBatch.rowIndices}; default 0..B−1.
   * @throws SpinNativeError `INVALID_ARGUMENT` for no rows, a malformed row, real and generated
   *   prompts that differ, an empty response after truncation under the `"error"` policy (the
   *   message names the row), or every row skipped under `"skip"`.
   */
  collate(rows: readonly SpinRow[], rowIndices?: readonly number[]): SpinBatch {
    const call = "SpinCollator.collate";
    const { kept, indices, skipped } = this.#tokenizeAll(rows, rowIndices, ["real", "generated"], call);
    const real = kept.map((t) => ({ prompt: t.prompt, response: t.responses[0]! }));
    const generated = kept.map((t) => ({ prompt: t.prompt, response: t.responses[1]! }));
    return {
      ...this.#pad([...real, ...generated]),
      identical: kept.map((t) => sameIds(t.responses[0]!, t.responses[1]!)),
      generatedTokens: kept.map((t) => t.responses[1]!.length),
      rowIndices: indices,
      skipped,
    };
  }

  /**
   * Collates the real conversations of B rows for supervised fine-tuning: `[B, T]`, the same
   * prompt/response texts, EOS and labels as {@link collate}, truncated with the real response
   * alone as "the longer response". `generated` is not read.
   *
   * @throws SpinNativeError as {@link collate}.
   */
  collateSft(rows: readonly SpinRow[], rowIndices?: readonly number[]): SftBatch {
    const call = "SpinCollator.collateSft";
    const { kept, indices, skipped } = this.#tokenizeAll(rows, rowIndices, ["real"], call);
    return {
      ...this.#pad(kept.map((t) => ({ prompt: t.prompt, response: t.responses[0]! }))),
      rowIndices: indices,
      skipped,
    };
  }
}

/**
 * Optimizer steps per epoch: `ceil(numRows / (perDeviceBatch × worldSize × gradAccum))`, the
 * arithmetic of docs/method.md ("Steps per epoch"): the last, partial global batch counts as a step.
 * E.g. 49 792 pairs at per-device batch 8 on 8 ranks → 778; 50 000 → 782.
 *
 * Note: transformers' Trainer (which the original used) computes
 * `max(len(dataloader) // gradAccum, 1)` with `len(dataloader) = ceil(numRows / (perDeviceBatch ×
 * worldSize))`; the two agree whenever gradAccum is 1 (the original configs) and can differ by
 * one step when gradAccum > 1 does not divide the number of micro-batches.
 *
 * @throws SpinNativeError `INVALID_ARGUMENT` for a negative or non-integer row count or a
 *   batch, world size or accumulation that is not a positive integer.
 */
export function stepsPerEpoch(numRows: number, perDeviceBatch: number, worldSize: number, gradAccum: number): number {
  const call = "stepsPerEpoch";
  checkCount(numRows, "numRows", 0, call);
  checkCount(perDeviceBatch, "perDeviceBatch", 1, call);
  checkCount(worldSize, "worldSize", 1, call);
  checkCount(gradAccum, "gradAccum", 1, call);
  return Math.ceil(numRows / (perDeviceBatch * worldSize * gradAccum));
}

/**
 * Total optimizer steps of a run: `epochs × stepsPerEpoch(...)` (docs/method.md's total steps T,
 * from which the warmup `ceil(0.1 · total_steps)` is taken). A fractional number of epochs is
 * rounded up to whole steps, as transformers does.
 *
 * @throws SpinNativeError `INVALID_ARGUMENT` for epochs that are not a positive finite number,
 *   and as {@link stepsPerEpoch}.
 */
export function totalSteps(epochs: number, numRows: number, perDeviceBatch: number, worldSize: number, gradAccum: number): number {
  if (typeof epochs !== "number" || !Number.isFinite(epochs) || !(epochs > 0)) {
    throw invalid(`epochs must be a positive number, got ${String(epochs)}`, "totalSteps");
  }
  return Math.ceil(epochs * stepsPerEpoch(numRows, perDeviceBatch, worldSize, gradAccum));
}
