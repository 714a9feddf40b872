// Hugging Face tokenizers for training: tokenizer.json through @huggingface/tokenizers (pure JS),
// chat templates through @huggingface/jinja, and the SPIN prompt/response texts of docs/method.md
// ("Chat templates").
// Over 400 lines because it is one class: loading resolves transformers' rules for special and
// added tokens across tokenizer.json, tokenizer_config.json and special_tokens_map.json in one
// constructor, and the chat-template and SPIN-text methods depend on what it resolved.
import { copyFile, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { basename, join, resolve } from "node:path";

import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";

import { ZEPHYR_CHAT_TEMPLATE, renderChatTemplate } from "./chat-template.js";
import { SpinNativeError } from "../core/errors.js";

export { ZEPHYR_CHAT_TEMPLATE } from "./chat-template.js";

/** One turn of a conversation. Extra fields (e.g. `reasoning_content`) reach the template as they are. */
export interface ChatMessage {
  /** `"system"`, `"user"`, `"assistant"`, or whatever else the template knows. */
  role: string;
  /** The turn's text. */
  content: string;
  /** Further fields some templates read. */
  [key: string]: unknown;
}

/** A token from tokenizer.json's `added_tokens`. */
export interface AddedTokenInfo {
  /** The token's id. */
  readonly id: number;
  /** The token's text, e.g. `"</s>"`. */
  readonly content: string;
  /** Whether it is a special token (skipped by `decode(ids, { skipSpecialTokens: true })`). */
  readonly special: boolean;
}

/** Options of {@link Tokenizer.encode}. */
export interface EncodeOptions {
  /**
   * Add the special tokens of tokenizer.json's post-processor (e.g. Llama's BOS). Default
   * `false`: SPIN tokenizes template output, which already holds whatever the template writes.
   */
  addSpecialTokens?: boolean;
}

/** Options of {@link Tokenizer.decode}. */
export interface DecodeOptions {
  /** Drop special tokens from the text. Default `false`. */
  skipSpecialTokens?: boolean;
}

/** Options of {@link Tokenizer.applyChatTemplate}. */
export interface ChatTemplateOptions {
  /** Append the template's generation prompt (the assistant header). Default `false`. */
  addGenerationPrompt?: boolean;
  /** Return token ids (encoded without added special tokens) instead of text. Default `false`. */
  tokenize?: boolean;
  /**
   * The template to use instead of the tokenizer's: the name of one of its named templates
   * ({@link Tokenizer.chatTemplates}) or a template source.
   */
  chatTemplate?: string;
  /** More template variables (e.g. `{ enable_thinking: false }`), like transformers' `**kwargs`. */
  variables?: Readonly<Record<string, unknown>>;
}

/** Options of {@link Tokenizer.promptText} and {@link Tokenizer.responseText}. */
export interface SpinTextOptions {
  /**
   * Put an empty system message in front of the prompt when it has none. Default: whether the
   * template contains `<|system|>` (alignment-handbook's `maybe_insert_system_message` rule) —
   * true for the Zephyr default template, which gives SPIN's golden prompt
   * `"<|system|>\n</s>\n<|user|>\n{x}</s>\n<|assistant|>\n"`.
   */
  insertEmptySystem?: boolean;
  /** As in {@link ChatTemplateOptions.chatTemplate}. */
  chatTemplate?: string;
  /** As in {@link ChatTemplateOptions.variables}. */
  variables?: Readonly<Record<string, unknown>>;
}

/** Files of a Hugging Face model folder that belong to the tokenizer (copied by {@link Tokenizer.copyFilesTo}). */
export const TOKENIZER_FILES: readonly string[] = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
  "added_tokens.json",
  "tokenizer.model",
  "vocab.json",
  "merges.txt",
];

const SPECIAL_TOKEN_FIELDS = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"] as const;
type SpecialTokenField = (typeof SPECIAL_TOKEN_FIELDS)[number];

/** model_max_length values at or above this are transformers' "no limit" (int(1e30)). */
const VERY_LARGE_INTEGER = 1e29;

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function invalid(message: string, call: string): SpinNativeError {
  return new SpinNativeError(message, "INVALID_ARGUMENT", call);
}

/** A special-token field: a string, an AddedToken object `{content}`, or null/absent. */
function tokenContent(value: unknown, where: string, field: string, call: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === "string") return value;
  if (isObject(value) && typeof value.content === "string") return value.content;
  throw invalid(`${where}: field '${field}' must be a string or an object with a string 'content'`, call);
}

async function readJsonFile(path: string, required: boolean, call: string): Promise<JsonObject | null> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (!required && code === "ENOENT") return null;
    throw new SpinNativeError(`${path}: cannot read the file (${code ?? String(e)})`, "IO", call);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw invalid(`${path}: malformed JSON: ${e instanceof Error ? e.message : String(e)}`, call);
  }
  if (!isObject(parsed)) throw invalid(`${path}: expected a JSON object at the top level`, call);
  return parsed;
}

async function readOptionalText(path: string, call: string): Promise<string | null> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return null;
    throw new SpinNativeError(`${path}: cannot read the file (${code ?? String(e)})`, "IO", call);
  }
}

/** Where each input came from, for error messages. */
interface Sources {
  tokenizerJson: string;
  config: string;
  specialTokensMap: string;
  chatTemplateFile: string;
}

interface Parts {
  tokenizerJson: JsonObject;
  config: JsonObject | null;
  specialTokensMap: JsonObject | null;
  chatTemplateFile: string | null;
  sources: Sources;
  files: string[];
}

/**
 * A Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) with its chat template,
 * and the prompt/response texts SPIN trains on.
 *
 * Special tokens come from tokenizer_config.json (overridden by special_tokens_map.json when
 * the folder has one, as transformers does); the chat template from chat_template.jinja when
 * present, else tokenizer_config.json's `chat_template`.
 */
export class Tokenizer {
  /** bos_token of the config, or null. */
  readonly bosToken: string | null;
  /** eos_token of the config, or null. */
  readonly eosToken: string | null;
  /** pad_token of the config, or null (then {@link padTokenId} is the EOS id). */
  readonly padToken: string | null;
  /** unk_token of the config, or null. */
  readonly unkToken: string | null;
  /** Id of {@link bosToken}, or null. */
  readonly bosTokenId: number | null;
  /** Id of {@link eosToken}, or null. */
  readonly eosTokenId: number | null;
  /** Id of {@link padToken}; the EOS id when there is no pad token (docs/method.md, "Tokenization and truncation"); null when neither exists. */
  readonly padTokenId: number | null;
  /** Id of {@link unkToken}, or null. */
  readonly unkTokenId: number | null;
  /**
   * Special tokens of the config by field name (`bos_token`, `eos_token`, `unk_token`,
   * `sep_token`, `pad_token`, `cls_token`, `mask_token`), only those set.
   */
  readonly specialTokens: Readonly<Partial<Record<SpecialTokenField, string>>>;
  /** The config's additional_special_tokens. */
  readonly additionalSpecialTokens: readonly string[];
  /** tokenizer.json's added tokens, in file order. */
  readonly addedTokens: readonly AddedTokenInfo[];
  /** Ids of every special token: added tokens marked special and the config's special tokens. */
  readonly specialTokenIds: ReadonlySet<number>;
  /**
   * The tokenizer's own chat template (the one named "default" when the config lists named
   * templates), or null — {@link applyChatTemplate} then uses {@link ZEPHYR_CHAT_TEMPLATE}.
   */
  readonly chatTemplate: string | null;
  /** Every template by name when the config lists named templates (`[{name, template}]`); else empty. */
  readonly chatTemplates: ReadonlyMap<string, string>;
  /** model_max_length of the config; `Infinity` when absent or transformers' int(1e30) "no limit". */
  readonly modelMaxLength: number;
  /** Number of distinct tokens, added tokens included (Python's `len(tokenizer)`). */
  readonly vocabSize: number;
  /** Absolute paths of the tokenizer files the tokenizer was loaded from ({@link TOKENIZER_FILES} found); empty for {@link fromJSON}. */
  readonly files: readonly string[];

  readonly #hf: HfTokenizer;
  readonly #tokenizerJson: JsonObject;
  readonly #config: JsonObject | null;
  readonly #templateSource: string;
  readonly #vocabIds: ReadonlySet<number>;

  private constructor(parts: Parts, call: string) {
    const { tokenizerJson, sources } = parts;
    if (!isObject(tokenizerJson.model)) throw invalid(`${sources.tokenizerJson}: field 'model' is missing or not an object`, call);
    if (tokenizerJson.added_tokens !== undefined && !Array.isArray(tokenizerJson.added_tokens)) {
      throw invalid(`${sources.tokenizerJson}: field 'added_tokens' must be an array`, call);
    }
    const config: JsonObject = { ...(parts.config ?? {}) };

    // Special tokens: config first, special_tokens_map.json overrides (transformers' order).
    const special: Partial<Record<SpecialTokenField, string>> = {};
    const origin: Partial<Record<SpecialTokenField, string>> = {};
    for (const field of SPECIAL_TOKEN_FIELDS) {
      let value = tokenContent(config[field], sources.config, field, call);
      let where = sources.config;
      const mapped = parts.specialTokensMap?.[field];
      if (mapped !== undefined) {
        value = tokenContent(mapped, sources.specialTokensMap, field, call);
        where = sources.specialTokensMap;
      }
      if (value !== null) {
        special[field] = value;
        origin[field] = where;
      }
    }
    const additionalRaw = parts.specialTokensMap?.additional_special_tokens ?? config.additional_special_tokens;
    const additionalWhere =
      parts.specialTokensMap?.additional_special_tokens !== undefined ? sources.specialTokensMap : sources.config;
    if (additionalRaw !== undefined && additionalRaw !== null && !Array.isArray(additionalRaw)) {
      throw invalid(`${additionalWhere}: field 'additional_special_tokens' must be an array`, call);
    }
    const additional = (additionalRaw ?? []).map((v: unknown, i: number) => {
      const c = tokenContent(v, additionalWhere, `additional_special_tokens[${i}]`, call);
      if (c === null) throw invalid(`${additionalWhere}: field 'additional_special_tokens[${i}]' is null`, call);
      return c;
    });

    // The JS runtime compares config tokens as strings and needs an added_tokens array.
    const hfConfig: JsonObject = { ...config, ...special, additional_special_tokens: additional };
    const hfJson: JsonObject = { ...tokenizerJson, added_tokens: tokenizerJson.added_tokens ?? [] };
    try {
      this.#hf = new HfTokenizer(hfJson, hfConfig);
    } catch (e) {
      throw invalid(`${sources.tokenizerJson}: cannot build the tokenizer: ${e instanceof Error ? e.message : String(e)}`, call);
    }
    this.#tokenizerJson = tokenizerJson;
    this.#config = parts.config;

    const vocab = this.#hf.get_vocab(true);
    this.vocabSize = new Set(vocab.values()).size;
    this.#vocabIds = new Set(vocab.values());

    const idOf = (field: SpecialTokenField): number | null => {
      const token = special[field];
      if (token === undefined) return null;
      const id = this.#hf.token_to_id(token);
      if (id === undefined) {
        throw invalid(`${origin[field] ?? sources.config}: field '${field}' names "${token}", which is not in the vocabulary of ${sources.tokenizerJson}`, call);
      }
      return id;
    };
    this.specialTokens = Object.freeze({ ...special });
    this.additionalSpecialTokens = Object.freeze(additional);
    this.bosToken = special.bos_token ?? null;
    this.eosToken = special.eos_token ?? null;
    this.padToken = special.pad_token ?? null;
    this.unkToken = special.unk_token ?? null;
    this.bosTokenId = idOf("bos_token");
    this.eosTokenId = idOf("eos_token");
    this.unkTokenId = idOf("unk_token");
    this.padTokenId = idOf("pad_token") ?? this.eosTokenId;
    for (const f of ["sep_token", "cls_token", "mask_token"] as const) idOf(f);

    const added: AddedTokenInfo[] = [];
    const specialIds = new Set<number>();
    for (const [i, t] of (hfJson.added_tokens as unknown[]).entries()) {
      if (!isObject(t) || typeof t.id !== "number" || typeof t.content !== "string") {
        throw invalid(`${sources.tokenizerJson}: field 'added_tokens[${i}]' needs a numeric 'id' and a string 'content'`, call);
      }
      const info: AddedTokenInfo = Object.freeze({ id: t.id, content: t.content, special: t.special === true });
      added.push(info);
      if (info.special) specialIds.add(info.id);
    }
    for (const token of [...Object.values(special), ...additional]) {
      const id = this.#hf.token_to_id(token);
      if (id !== undefined) specialIds.add(id);
    }
    this.addedTokens = Object.freeze(added);
    this.specialTokenIds = specialIds;

    // Chat template(s).
    const templates = new Map<string, string>();
    let own: string | null = null;
    let templateSource = `${sources.config} chat_template`;
    if (parts.chatTemplateFile !== null) {
      own = parts.chatTemplateFile;
      templateSource = sources.chatTemplateFile;
    } else {
      const ct = config.chat_template;
      if (typeof ct === "string") {
        own = ct;
      } else if (Array.isArray(ct)) {
        for (const [i, entry] of ct.entries()) {
          if (!isObject(entry) || typeof entry.name !== "string" || typeof entry.template !== "string") {
            throw invalid(`${sources.config}: field 'chat_template[${i}]' must be an object {name, template} of strings`, call);
          }
          templates.set(entry.name, entry.template);
        }
      } else if (isObject(ct)) {
        for (const [name, template] of Object.entries(ct)) {
          if (typeof template !== "string") throw invalid(`${sources.config}: field 'chat_template.${name}' must be a string`, call);
          templates.set(name, template);
        }
      } else if (ct !== undefined && ct !== null) {
        throw invalid(`${sources.config}: field 'chat_template' must be a string or a list of {name, template}`, call);
      }
      if (templates.size > 0) own = templates.get("default") ?? null;
    }
    this.chatTemplate = own;
    this.chatTemplates = templates;
    this.#templateSource = templateSource;

    const mml = config.model_max_length;
    if (mml !== undefined && mml !== null && (typeof mml !== "number" || !(mml > 0))) {
      throw invalid(`${sources.config}: field 'model_max_length' must be a positive number`, call);
    }
    this.modelMaxLength = typeof mml === "number" && mml < VERY_LARGE_INTEGER ? mml : Infinity;
    this.files = Object.freeze([...parts.files]);
  }

  /**
   * Loads the tokenizer of a Hugging Face model folder: tokenizer.json (required),
   * tokenizer_config.json, special_tokens_map.json and chat_template.jinja (each optional).
   *
   * @param dir - The model folder.
   * @throws SpinNativeError `IO` when the folder or tokenizer.json is missing or a file cannot be
   *   read; `INVALID_ARGUMENT` for malformed JSON or bad fields (the message names file and field).
   */
  static async fromDir(dir: string): Promise<Tokenizer> {
    const call = "Tokenizer.fromDir";
    const root = resolve(dir);
    try {
      const s = await stat(root);
      if (!s.isDirectory()) throw new SpinNativeError(`${root}: not a folder`, "IO", call);
    } catch (e) {
      if (e instanceof SpinNativeError) throw e;
      const code = (e as NodeJS.ErrnoException).code;
      throw new SpinNativeError(`${root}: cannot open the model folder (${code ?? String(e)})`, "IO", call);
    }
    const path = (name: string): string => join(root, name);
    const tokenizerJson = await readJsonFile(path("tokenizer.json"), true, call);
    const config = await readJsonFile(path("tokenizer_config.json"), false, call);
    const specialTokensMap = await readJsonFile(path("special_tokens_map.json"), false, call);
    const chatTemplateFile = await readOptionalText(path("chat_template.jinja"), call);
    const files: string[] = [];
    for (const name of TOKENIZER_FILES) {
      try {
        if ((await stat(path(name))).isFile()) files.push(path(name));
      } catch {
        // absent
      }
    }
    return new Tokenizer(
      {
        tokenizerJson: tokenizerJson!,
        config,
        specialTokensMap,
        chatTemplateFile,
        files,
        sources: {
          tokenizerJson: path("tokenizer.json"),
          config: path("tokenizer_config.json"),
          specialTokensMap: path("special_tokens_map.json"),
          chatTemplateFile: path("chat_template.jinja"),
        },
      },
      call,
    );
  }

  /**
   * Builds a tokenizer from the parsed contents of tokenizer.json and (optionally) tokenizer_config.json.
   *
   * @throws SpinNativeError `INVALID_ARGUMENT` for bad content (the message names file and field).
   */
  static fromJSON(tokenizerJson: object, config?: object | null): Tokenizer {
    const call = "Tokenizer.fromJSON";
    if (!isObject(tokenizerJson)) throw invalid("tokenizer.json: expected a JSON object", call);
    if (config !== undefined && config !== null && !isObject(config)) throw invalid("tokenizer_config.json: expected a JSON object", call);
    return new Tokenizer(
      {
        tokenizerJson,
        config: config ?? null,
        specialTokensMap: null,
        chatTemplateFile: null,
        files: [],
        sources: {
          tokenizerJson: "tokenizer.json",
          config: "tokenizer_config.json",
          specialTokensMap: "special_tokens_map.json",
          chatTemplateFile: "chat_template.jinja",
        },
      },
      call,
    );
  }

  /**
   * Token ids of a text. Special-token strings in the text (e.g. `"</s>"`) become their ids,
   * as in transformers.
   *
   * @param text - The text.
   * @param options - `addSpecialTokens` (default false) adds the post-processor's tokens (e.g. BOS).
   */
  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== "string") throw new TypeError("Tokenizer.encode: text must be a string");
    return this.#hf.encode(text, { add_special_tokens: options.addSpecialTokens ?? false }).ids;
  }

  /**
   * The text of token ids.
   *
   * @param ids - Token ids.
   * @param options - `skipSpecialTokens` (default false) drops special tokens.
   * @throws SpinNativeError `INVALID_ARGUMENT` for an id that is not in the vocabulary.
   */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    for (const [i, id] of ids.entries()) {
      if (!Number.isInteger(id) || !this.#vocabIds.has(id)) {
        throw invalid(`Tokenizer.decode: ids[${i}] = ${id} is not a token id of this tokenizer`, "Tokenizer.decode");
      }
    }
    if (ids.length === 0) return "";
    return this.#hf.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? false });
  }

  /** The id of a token string (added tokens included), or null when it is not in the vocabulary. */
  tokenToId(token: string): number | null {
    return this.#hf.token_to_id(token) ?? null;
  }

  /** The token string of an id, or null when the id is not in the vocabulary. */
  idToToken(id: number): string | null {
    if (!this.#vocabIds.has(id)) return null;
    return this.#hf.id_to_token(id) ?? null;
  }

  /** The template {@link applyChatTemplate} uses by default: the tokenizer's own, else Zephyr's. */
  get effectiveChatTemplate(): string {
    return this.#resolveTemplate(undefined, "Tokenizer.effectiveChatTemplate").template;
  }

  #resolveTemplate(choice: string | undefined, call: string): { template: string; source: string } {
    if (choice !== undefined) {
      const named = this.chatTemplates.get(choice);
      if (named !== undefined) return { template: named, source: `${this.#templateSource} '${choice}'` };
      return { template: choice, source: "the chatTemplate option" };
    }
    if (this.chatTemplate !== null) return { template: this.chatTemplate, source: this.#templateSource };
    if (this.chatTemplates.size > 0) {
      throw invalid(
        `${this.#templateSource}: the tokenizer has named chat templates (${[...this.chatTemplates.keys()].join(", ")}) ` +
          `but none named "default"; pass chatTemplate`,
        call,
      );
    }
    return { template: ZEPHYR_CHAT_TEMPLATE, source: "the Zephyr default chat template" };
  }

  /** The variables transformers gives a template: special tokens (only those set), tools/documents none. */
  #templateVariables(): Record<string, unknown> {
    const vars: Record<string, unknown> = { ...this.specialTokens, tools: null, documents: null };
    if (this.additionalSpecialTokens.length > 0) vars.additional_special_tokens = [...this.additionalSpecialTokens];
    return vars;
  }

  /**
   * Renders a conversation with the chat template (the tokenizer's own, else
   * {@link ZEPHYR_CHAT_TEMPLATE}) as transformers' `apply_chat_template` does: variables
   * `messages`, `add_generation_prompt`, the special tokens that are set (`bos_token`,
   * `eos_token`, `pad_token`, `unk_token`, ..., `additional_special_tokens`), `tools` and
   * `documents` as none, `raise_exception`, plus `options.variables`. Blocks are rendered with
   * trim_blocks and lstrip_blocks, and one trailing newline of the template is dropped.
   *
   * @returns The text, or with `tokenize: true` its token ids (no added special tokens).
   * @throws SpinNativeError `INVALID_ARGUMENT` when the template fails or calls `raise_exception`
   *   (its message is quoted).
   */
  applyChatTemplate(messages: readonly ChatMessage[], options?: ChatTemplateOptions & { tokenize?: false }): string;
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions & { tokenize: true }): number[];
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string | number[] {
    const call = "Tokenizer.applyChatTemplate";
    const text = this.#render(messages, options.addGenerationPrompt ?? false, options.chatTemplate, options.variables, call);
    return options.tokenize === true ? this.encode(text) : text;
  }

  #render(
    messages: readonly ChatMessage[],
    addGenerationPrompt: boolean,
    choice: string | undefined,
    variables: Readonly<Record<string, unknown>> | undefined,
    call: string,
  ): string {
    if (!Array.isArray(messages)) throw new TypeError(`${call}: messages must be an array`);
    for (const [i, m] of messages.entries()) {
      if (!isObject(m) || typeof m.role !== "string" || typeof m.content !== "string") {
        throw new TypeError(`${call}: messages[${i}] must be {role: string, content: string}`);
      }
    }
    const { template, source } = this.#resolveTemplate(choice, call);
    return renderChatTemplate(
      template,
      {
        ...this.#templateVariables(),
        ...variables,
        messages: messages.map((m) => ({ ...m })),
        add_generation_prompt: addGenerationPrompt,
      },
      source,
      call,
    );
  }

  #spinPrompt(promptMessages: readonly ChatMessage[], options: SpinTextOptions, call: string): ChatMessage[] {
    const { template } = this.#resolveTemplate(options.chatTemplate, call);
    const insert = options.insertEmptySystem ?? template.includes("<|system|>");
    const messages = [...promptMessages];
    if (insert && messages[0]?.role !== "system") messages.unshift({ role: "system", content: "" });
    return messages;
  }

  /**
   * SPIN's prompt text: the chat template over the prompt messages with the generation prompt.
   * An empty system message goes first when the prompt has none and
   * {@link SpinTextOptions.insertEmptySystem} holds (by default when the template contains
   * `<|system|>`, as for Zephyr). For Zephyr and x = "What is 2+2?":
   * `"<|system|>\n</s>\n<|user|>\nWhat is 2+2?</s>\n<|assistant|>\n"`.
   */
  promptText(promptMessages: readonly ChatMessage[], options: SpinTextOptions = {}): string {
    const call = "Tokenizer.promptText";
    const messages = this.#spinPrompt(promptMessages, options, call);
    return this.#render(messages, true, options.chatTemplate, options.variables, call);
  }

  /**
   * SPIN's response text: the template's rendering of the assistant turn without the assistant
   * header (the training code appends one EOS token after it). For Zephyr and y = "4": `"4</s>\n"`.
   *
   * Rule: with P = the prompt as {@link promptText} renders it (generation prompt included) and
   * F = the prompt plus the assistant turn rendered without generation prompt, the response is F
   * after its prefix P — exactly what follows the text the model is given at generation time.
   *
   * Fallback, when F does not start with P (templates whose generation prompt differs from the
   * header they write before an assistant turn, e.g. one that opens a think block only in the
   * generation prompt): with Q = the prompt rendered without generation prompt, the response is F
   * after its prefix Q, less the assistant header — the text the template writes before the
   * content of an assistant turn (found by rendering a placeholder content). When that fails too,
   * the template cannot be split into prompt and response, and this throws.
   *
   * Templates that render the last assistant turn differently from earlier ones show it here:
   * Qwen3's writes an empty think block, `"<think>\n\n</think>\n\n{y}<|im_end|>\n"`.
   *
   * @param promptMessages - The prompt (as for {@link promptText}).
   * @param response - The assistant's text, or a whole assistant message.
   * @throws SpinNativeError `INVALID_ARGUMENT` when the template output cannot be split as above.
   */
  responseText(promptMessages: readonly ChatMessage[], response: string | ChatMessage, options: SpinTextOptions = {}): string {
    const call = "Tokenizer.responseText";
    const messages = this.#spinPrompt(promptMessages, options, call);
    const turn: ChatMessage = typeof response === "string" ? { role: "assistant", content: response } : response;
    const render = (msgs: readonly ChatMessage[], gen: boolean): string =>
      this.#render(msgs, gen, options.chatTemplate, options.variables, call);
    const full = render([...messages, turn], false);
    const prompt = render(messages, true);
    if (full.startsWith(prompt)) return full.slice(prompt.length);
    const bare = render(messages, false);
    if (full.startsWith(bare)) {
      const placeholder = "\uE000spin-native-response\uE001";
      const withPlaceholder = render([...messages, { ...turn, content: placeholder }], false);
      const at = withPlaceholder.indexOf(placeholder, bare.length);
      if (withPlaceholder.startsWith(bare) && at >= 0) {
        const header = withPlaceholder.slice(bare.length, at);
        const rest = full.slice(bare.length);
        if (rest.startsWith(header)) return rest.slice(header.length);
      }
    }
    throw invalid(
      `${call}: the chat template's rendering of the conversation does not start with its rendering of the prompt ` +
        `followed by the assistant header, so the response text cannot be cut out`,
      call,
    );
  }

  /**
   * Copies the tokenizer files into a folder (created if needed), e.g. next to saved weights.
   * A tokenizer from {@link fromJSON} writes tokenizer.json and tokenizer_config.json instead.
   *
   * @returns The paths written.
   * @throws SpinNativeError `IO` when a file cannot be written.
   */
  async copyFilesTo(dir: string): Promise<string[]> {
    const call = "Tokenizer.copyFilesTo";
    const root = resolve(dir);
    const written: string[] = [];
    try {
      await mkdir(root, { recursive: true });
      if (this.files.length > 0) {
        for (const file of this.files) {
          const target = join(root, basename(file));
          if (resolve(file) !== target) await copyFile(file, target);
          written.push(target);
        }
      } else {
        const tj = join(root, "tokenizer.json");
        await writeFile(tj, JSON.stringify(this.#tokenizerJson));
        written.push(tj);
        if (this.#config !== null) {
          const tc = join(root, "tokenizer_config.json");
          await writeFile(tc, JSON.stringify(this.#config, null, 2));
          written.push(tc);
        }
      }
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new SpinNativeError(`${root}: cannot write the tokenizer files (${code ?? String(e)})`, "IO", call);
    }
    return written;
  }
}
