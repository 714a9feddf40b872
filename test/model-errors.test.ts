// Bad inputs to CausalLM: every one is a SpinNativeError with the code a caller can act on and
// a message that names what is wrong (the file, the field, the tensor, the sizes).
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { CausalLM, SpinNativeError, type Tensor, loadSafetensors, ones, saveSafetensors, scope, tensor, zeros } from "../lib/index.js";
import { VOCAB, hfConfig, removeRoot, tempRoot, writeFixture } from "./fixtures.js";
import { expectCode } from "./helpers.js";

const root = tempRoot("model-errors");
afterAll(() => removeRoot(root));

const int64 = (data: number[][]) => tensor(data, { dtype: "int64" });

async function rejection(promise: Promise<unknown>): Promise<SpinNativeError> {
  try {
    const value = await promise;
    if (value && typeof (value as CausalLM).dispose === "function") (value as CausalLM).dispose();
  } catch (error) {
    expect(error).toBeInstanceOf(SpinNativeError);
    return error as SpinNativeError;
  }
  return expect.fail("expected a rejection with a SpinNativeError");
}

async function expectLoadError(dir: string, code: SpinNativeError["code"]): Promise<SpinNativeError> {
  const error = await rejection(CausalLM.load(dir));
  expect(error.code, error.message).toBe(code);
  return error;
}

describe("loading", () => {
  test("unknown model_type → INVALID_ARGUMENT naming it and the supported types", async () => {
    const dir = path.join(root, "falcon");
    await writeFixture(dir, "llama", { config: { model_type: "falcon" } });
    const error = await expectLoadError(dir, "INVALID_ARGUMENT");
    expect(error.message).toContain("'falcon'");
    expect(error.message).toContain(path.join(dir, "config.json"));
    for (const type of ["llama", "mistral", "qwen2", "gpt2"]) expect(error.message).toContain(type);
  });

  test("missing, mis-shaped and unexpected tensors → SHAPE_MISMATCH listing every problem", async () => {
    const dir = path.join(root, "misfit");
    await writeFixture(dir, "llama");
    const file = path.join(dir, "model.safetensors");
    const tensors = await loadSafetensors(file);
    const edited: Record<string, Tensor> = {};
    for (const [name, t] of Object.entries(tensors)) {
      if (name === "model.layers.1.mlp.up_proj.weight" || name === "lm_head.weight") continue;
      edited[name] = name === "model.layers.0.self_attn.q_proj.weight" ? t.slice(0, 0, 8).contiguous() : t.clone();
    }
    edited["model.layers.0.self_attn.extra.weight"] = zeros([2, 2]);
    edited["model.norm.bias"] = zeros([16]);
    for (const t of Object.values(tensors)) t.dispose();
    await saveSafetensors(file, edited);
    for (const t of Object.values(edited)) t.dispose();
    const error = await expectLoadError(dir, "SHAPE_MISMATCH");
    const lines = [
      "missing model.layers.1.mlp.up_proj.weight [40, 16]",
      "missing lm_head.weight [64, 16]",
      "model.layers.0.self_attn.q_proj.weight has shape [8, 16], expected [16, 16]",
      "unexpected model.layers.0.self_attn.extra.weight",
      "unexpected model.norm.bias",
    ];
    for (const line of lines) expect(error.message).toContain(line);
    expect(error.message).toContain("(5 problem(s))");
  });

  test("config.json that is not JSON → INVALID_ARGUMENT naming the file", async () => {
    const dir = path.join(root, "bad-json");
    await writeFixture(dir, "llama");
    const file = path.join(dir, "config.json");
    writeFileSync(file, '{"model_type": "llama",');
    const error = await expectLoadError(dir, "INVALID_ARGUMENT");
    expect(error.message).toContain(file);
    expect(error.message).toContain("not valid JSON");
  });

  test("a config field of the wrong type → INVALID_ARGUMENT naming the file and the field", async () => {
    const dir = path.join(root, "bad-field");
    await writeFixture(dir, "llama", { config: { hidden_size: "16" } });
    const error = await expectLoadError(dir, "INVALID_ARGUMENT");
    expect(error.message).toContain(path.join(dir, "config.json"));
    expect(error.message).toContain("'hidden_size'");
  });

  test.each([
    ["hidden_act gelu", { hidden_act: "gelu" }, "hidden_act"],
    ["rope_scaling yarn", { rope_scaling: { rope_type: "yarn", factor: 2 } }, "rope_type"],
    ["heads not a multiple of kv heads", { num_key_value_heads: 3, num_attention_heads: 2 }, "numKvHeads"],
  ])("unsupported settings (%s) → INVALID_ARGUMENT", async (_, config, word) => {
    const dir = path.join(root, `unsupported-${word}`);
    await writeFixture(dir, "llama", { config });
    const error = await expectLoadError(dir, "INVALID_ARGUMENT");
    expect(error.message).toContain(word);
  });

  test("a folder without safetensors → IO; without config.json → IO", async () => {
    const dir = path.join(root, "no-weights");
    await writeFixture(dir, "llama");
    rmSync(path.join(dir, "model.safetensors"));
    const error = await expectLoadError(dir, "IO");
    expect(error.message).toContain(dir);
    expect(error.message).toContain("model.safetensors");
    const empty = path.join(root, "no-config");
    await writeFixture(empty, "llama");
    rmSync(path.join(empty, "config.json"));
    expect((await expectLoadError(empty, "IO")).message).toContain(path.join(empty, "config.json"));
  });

  test("a corrupt weights file → IO naming it; an index naming a tensor no shard holds → IO", async () => {
    const dir = path.join(root, "corrupt");
    await writeFixture(dir, "llama");
    const file = path.join(dir, "model.safetensors");
    writeFileSync(file, Buffer.from([255, 0, 0, 0, 0, 0, 0, 0, 123]));
    expect((await expectLoadError(dir, "IO")).message).toContain(file);

    const sharded = path.join(root, "bad-index");
    await writeFixture(sharded, "llama", { maxShardBytes: 4096 });
    const indexFile = path.join(sharded, "model.safetensors.index.json");
    const index = JSON.parse(readFileSync(indexFile, "utf8")) as { weight_map: Record<string, string> };
    index.weight_map["model.layers.9.mlp.up_proj.weight"] = Object.values(index.weight_map)[0]!;
    writeFileSync(indexFile, JSON.stringify(index));
    const error = await expectLoadError(sharded, "IO");
    expect(error.message).toContain("model.layers.9.mlp.up_proj.weight");
  });
});

describe("calls on a loaded model", () => {
  let model: CausalLM;
  let gpt2: CausalLM;
  beforeAll(async () => {
    await writeFixture(path.join(root, "llama"), "llama");
    await writeFixture(path.join(root, "gpt2"), "gpt2");
    model = await CausalLM.load(path.join(root, "llama"));
    gpt2 = await CausalLM.load(path.join(root, "gpt2"));
  });
  afterAll(() => {
    model.dispose();
    gpt2.dispose();
  });

  test("token id ≥ vocab or < 0 → INVALID_ARGUMENT (forward, forwardAsync, logprobs)", async () => {
    scope(() => {
      const mask = ones([1, 3], { dtype: "int64" });
      const error = expectCode(() => model.forward(int64([[1, VOCAB, 2]]), mask), "INVALID_ARGUMENT");
      expect(error.message).toContain(String(VOCAB));
      expectCode(() => model.forward(int64([[1, -1, 2]]), mask), "INVALID_ARGUMENT");
    });
    const ids = int64([[1, VOCAB + 5, 2]]);
    const mask = ones([1, 3], { dtype: "int64" });
    const labels = int64([[-100, 3, 4]]);
    expect((await rejection(model.forwardAsync(ids, mask))).code).toBe("INVALID_ARGUMENT");
    expect((await rejection(model.logprobs(ids, mask, labels))).code).toBe("INVALID_ARGUMENT");
    for (const t of [ids, mask, labels]) t.dispose();
  });

  test("label outside the vocabulary → INVALID_ARGUMENT; labels of another shape → SHAPE_MISMATCH", async () => {
    const ids = int64([[1, 2, 3]]);
    const mask = ones([1, 3], { dtype: "int64" });
    const bad = int64([[-100, VOCAB, 4]]);
    const negative = int64([[-100, -5, 4]]);
    const short = int64([[-100, 3]]);
    expect((await rejection(model.logprobs(ids, mask, bad))).code).toBe("INVALID_ARGUMENT");
    expect((await rejection(model.logprobs(ids, mask, negative))).code).toBe("INVALID_ARGUMENT");
    expect((await rejection(model.logprobs(ids, mask, short))).code).toBe("SHAPE_MISMATCH");
    for (const t of [ids, mask, bad, negative, short]) t.dispose();
  });

  test("attention mask of the wrong shape → SHAPE_MISMATCH naming the expected shape", async () => {
    scope(() => {
      const ids = int64([[1, 2, 3]]);
      const wide = expectCode(() => model.forward(ids, ones([1, 4], { dtype: "int64" })), "SHAPE_MISMATCH");
      expect(wide.message).toContain("[1, 3]");
      expect(wide.message).toContain("[1, 4]");
      expectCode(() => model.forward(ids, ones([2, 3], { dtype: "int64" })), "SHAPE_MISMATCH");
    });
    const ids = int64([[1, 2, 3]]);
    const mask = ones([1, 2], { dtype: "int64" });
    const labels = int64([[-100, 2, 3]]);
    expect((await rejection(model.logprobs(ids, mask, labels))).code).toBe("SHAPE_MISMATCH");
    for (const t of [ids, mask, labels]) t.dispose();
  });

  test("positions or logitsAt of the wrong shape → SHAPE_MISMATCH; logitsAt out of range → INVALID_ARGUMENT", () => {
    scope(() => {
      const ids = int64([[1, 2, 3]]);
      const mask = ones([1, 3], { dtype: "int64" });
      expectCode(() => model.forward(ids, mask, { positions: int64([[0, 1]]) }), "SHAPE_MISMATCH");
      expectCode(() => model.forward(ids, mask, { logitsAt: int64([[0], [1]]) }), "SHAPE_MISMATCH");
      expectCode(() => model.forward(ids, mask, { logitsAt: int64([[7]]) }), "INVALID_ARGUMENT");
    });
  });

  test("ids that are not [batch, tokens] int64 → INVALID_ARGUMENT", () => {
    scope(() => {
      expectCode(() => model.forward(tensor([[1, 2]]), ones([1, 2], { dtype: "int64" })), "INVALID_ARGUMENT");
      expectCode(() => model.forward(tensor([1, 2], { dtype: "int64" }), ones([1, 2], { dtype: "int64" })), "INVALID_ARGUMENT");
    });
  });

  test("gpt2: a position beyond n_positions → INVALID_ARGUMENT", () => {
    const n = hfConfig("gpt2").n_positions as number;
    scope(() => {
      const ids = int64([[1, 2]]);
      const error = expectCode(() => gpt2.forward(ids, ones([1, 2], { dtype: "int64" }), { positions: int64([[0, n]]) }), "INVALID_ARGUMENT");
      expect(error.message).toContain(String(n));
    });
  });

  test("KV cache overflow or batch mismatch → SHAPE_MISMATCH; the cache stays usable", () => {
    using cache = model.newCache(1, 4);
    scope(() => {
      model.forward(int64([[1, 2, 3]]), ones([1, 3], { dtype: "int64" }), { cache });
      expect(cache.length).toBe(3);
      const error = expectCode(() => model.forward(int64([[4, 5]]), ones([1, 5], { dtype: "int64" }), { cache }), "SHAPE_MISMATCH");
      expect(error.message).toContain("4 slots");
      expect(cache.length).toBe(3);
      expectCode(() => model.forward(int64([[4], [5]]), ones([2, 4], { dtype: "int64" }), { cache }), "SHAPE_MISMATCH");
      expect(cache.length).toBe(3);
      model.forward(int64([[4]]), ones([1, 4], { dtype: "int64" }), { cache });
      expect(cache.length).toBe(4);
    });
    expectCode(() => model.newCache(0, 4), "INVALID_ARGUMENT");
  });

  test("a disposed model → DISPOSED", async () => {
    using other = await CausalLM.load(path.join(root, "llama"));
    other.dispose();
    scope(() => expectCode(() => other.forward(int64([[1]]), ones([1, 1], { dtype: "int64" })), "DISPOSED"));
  });
});
