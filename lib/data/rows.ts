// SPIN's row shapes (docs/method.md, "Data") and the conversion of every accepted input shape
// into one: a `real` conversation (prompt + ground-truth assistant turn) and a `generated` one
// (the same prompt + the model's assistant turn).
import { SpinNativeError } from "../core/errors.js";
import type { ChatMessage } from "../model/tokenizer.js";

export type { ChatMessage } from "../model/tokenizer.js";

/**
 * One SPIN training pair, one per prompt.
 *
 * - `real`: the prompt messages followed by the ground-truth assistant turn y.
 * - `generated`: the same prompt messages followed by the model's assistant turn y'. Before
 *   generation its last content may be `""`.
 *
 * Both end with an assistant message; everything before it is the prompt (system messages
 * included), and the two prompts are equal.
 */
export interface SpinRow {
  real: ChatMessage[];
  generated: ChatMessage[];
}

/** Where a row came from, for error messages: the file (when known), the 0-based row index and, for JSON Lines, the 1-based line. */
export interface RowLocation {
  file?: string;
  row: number;
  line?: number;
}

/** A conversation cut into its prompt and the text of its last (assistant) turn. */
export interface PromptSplit {
  prompt: ChatMessage[];
  response: string;
}

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function describeType(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v;
}

/** "FILE: row R", or "FILE (line L): row R" when the line is known. */
export function locateRow(where: RowLocation): string {
  return `${where.file ?? "rows"}${where.line !== undefined ? ` (line ${where.line})` : ""}: row ${where.row}`;
}

function rowError(where: RowLocation, message: string, call = "toSpinRow"): SpinNativeError {
  return new SpinNativeError(`${locateRow(where)}: ${message}`, "INVALID_ARGUMENT", call);
}

/** What a row holds, for the error when it fits no shape: its keys and their types. */
function foundKeys(raw: unknown): string {
  if (!isObject(raw)) return `found ${describeType(raw)} instead of an object`;
  const keys = Object.keys(raw);
  if (keys.length === 0) return "found an object with no keys";
  return `found keys ${keys.map((k) => `${k} (${describeType(raw[k])})`).join(", ")}`;
}

/**
 * Validates a message list: an array of objects with string `role` and string `content`.
 * Returns shallow copies (extra fields kept, as templates may read them).
 */
function messagesOf(value: unknown, field: string, fail: (message: string) => SpinNativeError): ChatMessage[] {
  if (!Array.isArray(value)) throw fail(`'${field}' must be a list of messages, got ${describeType(value)}`);
  return value.map((m: unknown, i: number) => {
    if (!isObject(m)) throw fail(`'${field}[${i}]' must be a message object {role, content}, got ${describeType(m)}`);
    if (typeof m.role !== "string") throw fail(`'${field}[${i}].role' must be a string, got ${describeType(m.role)}`);
    if (typeof m.content !== "string") throw fail(`'${field}[${i}].content' must be a string, got ${describeType(m.content)}`);
    return { ...m, role: m.role, content: m.content };
  });
}

/**
 * Cuts a conversation into its prompt (every message before the last) and its response (the
 * content of the last message, which must be an assistant turn).
 *
 * @throws SpinNativeError `INVALID_ARGUMENT` when the list is empty, a message is not
 *   `{role: string, content: string}`, or the last message is not from the assistant.
 */
export function splitPrompt(messages: readonly ChatMessage[]): PromptSplit {
  const call = "splitPrompt";
  const fail = (message: string): SpinNativeError => new SpinNativeError(`${call}: ${message}`, "INVALID_ARGUMENT", call);
  const checked = messagesOf(messages, "messages", fail);
  const last = checked[checked.length - 1];
  if (last === undefined) throw fail("the conversation is empty; it must end with an assistant message");
  if (last.role !== "assistant") {
    throw fail(`the last message must be the assistant's response, got role '${last.role}' (message ${checked.length - 1})`);
  }
  return { prompt: checked.slice(0, -1), response: last.content };
}

/** Index of the first message where two prompts differ, or -1. */
function promptMismatch(a: readonly ChatMessage[], b: readonly ChatMessage[]): number {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a[i];
    const y = b[i];
    if (x === undefined || y === undefined || x.role !== y.role || x.content !== y.content) return i;
  }
  return -1;
}

/** A row's conversation from message lists; the last message must be the assistant's. */
function conversation(messages: ChatMessage[], field: string, fail: (m: string) => SpinNativeError): ChatMessage[] {
  const last = messages[messages.length - 1];
  if (last === undefined) throw fail(`'${field}' is empty; it must hold the prompt and an assistant response`);
  if (last.role !== "assistant") throw fail(`'${field}' must end with an assistant message, its last role is '${last.role}'`);
  if (messages.length < 2) throw fail(`'${field}' holds only the assistant response; the prompt is missing`);
  return messages;
}

/** `real` and `generated` must share their prompt. */
function pair(real: ChatMessage[], generated: ChatMessage[], names: [string, string], fail: (m: string) => SpinNativeError): SpinRow {
  const at = promptMismatch(real.slice(0, -1), generated.slice(0, -1));
  if (at >= 0) {
    throw fail(`'${names[0]}' and '${names[1]}' must share the same prompt, they differ at message ${at}`);
  }
  return { real, generated };
}

/** Prompt messages from a `prompt` column: a string (one user turn) or a message list. */
function promptMessages(value: unknown, fail: (m: string) => SpinNativeError): ChatMessage[] {
  if (typeof value === "string") return [{ role: "user", content: value }];
  const messages = messagesOf(value, "prompt", fail);
  if (messages.length === 0) throw fail("'prompt' is an empty list of messages");
  const last = messages[messages.length - 1]!;
  if (last.role === "assistant") throw fail("'prompt' must not end with an assistant message");
  return messages;
}

/**
 * A conversation from a response column (`chosen`, `rejected`, `response`, `completion`):
 * - a string y → prompt + [assistant(y)] (the prompt column is required);
 * - a message list that holds only assistant turns (TRL's conversational "prompt-completion"
 *   form) → prompt + those turns (the prompt column is required);
 * - any other message list is a whole conversation that already contains its prompt, used as is.
 */
function responseConversation(
  value: unknown,
  field: string,
  prompt: ChatMessage[] | null,
  fail: (m: string) => SpinNativeError,
): ChatMessage[] {
  if (typeof value === "string") {
    if (prompt === null) throw fail(`'${field}' is a string, so the row needs a 'prompt'`);
    return [...prompt, { role: "assistant", content: value }];
  }
  const messages = messagesOf(value, field, fail);
  if (messages.length > 0 && messages.every((m) => m.role === "assistant")) {
    if (prompt === null) throw fail(`'${field}' holds only assistant messages, so the row needs a 'prompt'`);
    return conversation([...prompt, ...messages], field, fail);
  }
  return conversation(messages, field, fail);
}

/**
 * Converts one data row to a {@link SpinRow}. Accepted shapes, tried in this order:
 *
 * 1. `{real, generated}` (SPIN's own format): two message lists with the same prompt.
 * 2. `{chosen, rejected}` with an optional `prompt` (TRL-style preference rows and the original
 *    SPIN generator's output): chosen = real, rejected = generated. Each of chosen/rejected is a
 *    string (then `prompt` is required: `[user(prompt), assistant(text)]`, or the prompt's own
 *    messages when `prompt` is a message list), a list of assistant messages only (appended to
 *    the prompt), or a whole conversation that already includes the prompt (used as is; a
 *    `prompt` column is then ignored).
 * 3. `{messages}` (UltraChat-style, multi-turn): the last assistant turn is the response and
 *    every message before it (system messages included) is the prompt; messages after the last
 *    assistant turn are dropped. `generated` gets the same prompt and an empty response.
 * 4. `{prompt, response}` and 5. `{prompt, completion}`: `prompt` a string or a message list,
 *    the response a string or assistant messages; `generated`'s response is empty.
 *
 * Roles and contents must be strings; extra message fields are kept.
 *
 * @param raw - The row as parsed from jsonl/parquet.
 * @param where - The file (optional), 0-based row index and line (optional), named by errors.
 * @throws SpinNativeError `INVALID_ARGUMENT` naming the file and row: for a row that fits no
 *   shape (the message lists the keys found), and for a malformed message list.
 */
export function toSpinRow(raw: unknown, where: RowLocation): SpinRow {
  const fail = (message: string): SpinNativeError => rowError(where, message);
  if (!isObject(raw)) {
    throw fail(`expected an object with {real, generated}, {prompt, chosen, rejected}, {messages}, {prompt, response} or {prompt, completion}; ${foundKeys(raw)}`);
  }

  if ("real" in raw && "generated" in raw) {
    const real = conversation(messagesOf(raw.real, "real", fail), "real", fail);
    const generated = conversation(messagesOf(raw.generated, "generated", fail), "generated", fail);
    return pair(real, generated, ["real", "generated"], fail);
  }

  if ("chosen" in raw && "rejected" in raw) {
    const prompt = raw.prompt === undefined || raw.prompt === null ? null : promptMessages(raw.prompt, fail);
    const real = responseConversation(raw.chosen, "chosen", prompt, fail);
    const generated = responseConversation(raw.rejected, "rejected", prompt, fail);
    return pair(real, generated, ["chosen", "rejected"], fail);
  }

  if ("messages" in raw) {
    const messages = messagesOf(raw.messages, "messages", fail);
    let last = -1;
    for (let i = messages.length - 1; i >= 0; i--) {
      if (messages[i]!.role === "assistant") {
        last = i;
        break;
      }
    }
    if (last < 0) throw fail("'messages' has no assistant turn to train on");
    if (last === 0) throw fail("'messages' has no prompt before its assistant turn");
    const real = messages.slice(0, last + 1);
    const prompt = messages.slice(0, last);
    return { real, generated: [...prompt.map((m) => ({ ...m })), { role: "assistant", content: "" }] };
  }

  for (const field of ["response", "completion"] as const) {
    if ("prompt" in raw && field in raw) {
      const prompt = promptMessages(raw.prompt, fail);
      const real = responseConversation(raw[field], field, prompt, fail);
      return { real, generated: [...prompt.map((m) => ({ ...m })), { role: "assistant", content: "" }] };
    }
  }

  throw fail(
    `the row fits none of {real, generated}, {prompt, chosen, rejected}, {chosen, rejected}, {messages}, ` +
      `{prompt, response}, {prompt, completion}; ${foundKeys(raw)}`,
  );
}

/**
 * Share of pairs whose generated response equals the real one, as text (roles and contents).
 * Such a pair has zero SPIN gradient (its two log-prob differences are the same numbers), so
 * this is the share of the data that teaches the model nothing; near 1 means the model already
 * reproduces its data. (The trainer's `pairs/identical` compares token ids of the truncated
 * batch; the two agree unless truncation cuts two different texts to the same tokens.)
 */
export function identicalPairShare(rows: readonly SpinRow[]): number {
  if (rows.length === 0) return 0;
  const sameMessages = (a: ChatMessage[], b: ChatMessage[]) => a.length === b.length && a.every((m, i) => m.role === b[i]!.role && m.content === b[i]!.content);
  const same = rows.filter((row) => sameMessages(row.real, row.generated)).length;
  return same / rows.length;
}
