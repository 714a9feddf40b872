// LoRA adapters (lib/model/lora.ts, native/model/lora.cc): a fresh adapter leaves the outputs
// bit for bit; adapter gradients against central finite differences in float64; merged weights
// (in place, and written by save()) against the unmerged model; PEFT-format round trip
// byte-stable; a hand-built adapter in PEFT naming gives W + (α/r)·B·A; bad adapters and
// targets are errors naming the tensor or listing the modules; training touches only the adapter.
import { readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";

import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";

import { CausalLM, Optimizer, SpinCollator, SpinTrainer, type Tensor, manualSeed, noGrad, ones, runtimeInfo, setNumThreads, spinStep, tensor } from "../lib/index.js";
import { saveSafetensors } from "../lib/model/safetensors.js";
import { VOCAB, removeRoot, tempRoot, writeFixture } from "./fixtures.js";
import { valuesOf } from "./helpers.js";
import { pairOf, tinyTokenizer } from "./tiny-tokenizer.js";

const root = tempRoot("lora");
beforeAll(() => setNumThreads(1));
afterAll(() => removeRoot(root));

const IDS = [
  [5, 17, 42, 3, 60, 9, 33],
  [12, 7, 51, 2, 28, 40, 1],
];

async function fixture(variant: "llama" | "gpt2" | "qwen2", name: string = variant): Promise<string> {
  const dir = path.join(root, name);
  await writeFixture(dir, variant);
  return dir;
}

function logitsOf(model: CausalLM): number[] {
  const ids = tensor(IDS, { dtype: "int64" });
  const mask = ones([2, 7], { dtype: "int64" });
  const logits = noGrad(() => model.forward(ids, mask));
  const values = valuesOf(logits);
  for (const t of [ids, mask, logits]) t.dispose();
  return values;
}

/** Fills every adapter tensor (B included) with seeded values of about `size`, so the adapter changes the outputs. */
function randomizeAdapter(model: CausalLM, size = 0.1, seed = 7): void {
  let state = seed;
  const next = () => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 2 * size;
  const tensors = model.adapterTensors()!;
  noGrad(() => {
    for (const t of Object.values(tensors)) {
      const data = Array.from({ length: t.numel }, next);
      const values = tensor(t.dtype === "float64" ? Float64Array.from(data) : Float32Array.from(data), { shape: t.shape });
      t.copyFrom(values);
      values.dispose();
    }
  });
  for (const t of Object.values(tensors)) t.dispose();
}

function maxDiff(a: number[], b: number[]): number {
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
}

describe("a fresh adapter", () => {
  test.each(["llama", "gpt2", "qwen2"] as const)("%s: the outputs equal the base model's bit for bit; B is zero, A within ±1/√in", async (variant) => {
    using model = await CausalLM.load(await fixture(variant));
    const base = logitsOf(model);
    const config = model.addAdapter({ r: 4, alpha: 8, targetModules: "all-linear" });
    expect(config.modules.length).toBe(variant === "gpt2" ? 8 : 14);
    expect(logitsOf(model)).toEqual(base);
    const modules = new Map(model.linearModules().map((m) => [m.name, m]));
    const tensors = model.adapterTensors()!;
    for (const [name, t] of Object.entries(tensors)) {
      const values = valuesOf(t);
      const module = modules.get(name.replace(/\.lora_[AB]\.weight$/, ""))!;
      if (name.endsWith("lora_B.weight")) {
        expect(t.shape).toEqual([module.out, 4]);
        expect(values.every((v) => v === 0)).toBe(true);
      } else {
        expect(t.shape).toEqual([4, module.in]);
        const bound = 1 / Math.sqrt(module.in);
        expect(Math.max(...values.map(Math.abs))).toBeLessThanOrEqual(bound);
        expect(new Set(values).size).toBe(values.length);
      }
      expect(t.dtype).toBe("float32");
      t.dispose();
    }
  });

  test("default targets are PEFT's for the family; a target that matches nothing lists the model's linear modules", async () => {
    using llama = await CausalLM.load(await fixture("llama", "llama-targets"));
    expect(llama.addAdapter().modules).toEqual(["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"]);
    expect(() => llama.addAdapter()).toThrow(/already has an adapter/);
    llama.removeAdapter();
    expect(() => llama.addAdapter({ targetModules: ["q_proj", "qkv"] })).toThrow(
      /target module 'qkv' match no linear module of this model; its linear modules: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj/,
    );
    expect(() => llama.addAdapter({ r: 0 })).toThrow(/r must be an integer ≥ 1, got 0/);
    expect(() => llama.addAdapter({ dropout: 1 })).toThrow(/dropout must be a finite number in \[0, 1\)/);
    expect(() => llama.addAdapter({ rank: 8 } as never)).toThrow("model.addAdapter: unknown LoRA option 'rank'; the options are r, alpha, dropout, targetModules, useRslora, seed");
    expect(() => llama.addAdapter(null as never)).toThrow("model.addAdapter: LoRA options must be an object, got null");
    expect(() => llama.addAdapter(5 as never)).toThrow("model.addAdapter: LoRA options must be an object, got 5");
    expect(() => llama.addAdapter({ useRslora: "yes" } as never)).toThrow(/useRslora must be true or false, got "yes"/);
    using gpt2 = await CausalLM.load(await fixture("gpt2", "gpt2-targets"));
    expect(gpt2.addAdapter().modules).toEqual(["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"]);
  });
});

describe("adapter gradients (float64)", () => {
  test.each(["llama", "gpt2"] as const)("%s: ∂L/∂A and ∂L/∂B equal central finite differences", async (variant) => {
    using model = await CausalLM.load(await fixture(variant, `${variant}-fd`), { dtype: "float64" });
    model.addAdapter({ r: 2, alpha: 6, dropout: 0, targetModules: "all-linear" });
    randomizeAdapter(model, 0.3);
    const ids = tensor(IDS, { dtype: "int64" });
    const mask = ones([2, 7], { dtype: "int64" });
    const weights = tensor(Float64Array.from({ length: 2 * 7 * VOCAB }, (_, i) => Math.sin(i * 0.37)), { shape: [2, 7, VOCAB] });
    const lossOf = () => noGrad(() => {
      const logits = model.forward(ids, mask);
      const value = Number(logits.mul(weights).sum().item());
      logits.dispose();
      return value;
    });
    const tensors = model.adapterTensors()!;
    for (const t of Object.values(tensors)) t.requiresGrad = true;
    const logits = model.forward(ids, mask);
    const loss = logits.mul(weights).sum();
    loss.backward();
    const h = 1e-6;
    let checked = 0;
    for (const [name, t] of Object.entries(tensors).filter(([n]) => n.includes("layers.1") || n.includes("h.1"))) {
      const grad = valuesOf(t.grad!);
      const values = valuesOf(t);
      for (const i of [0, Math.floor(values.length / 2), values.length - 1]) {
        const at = (delta: number) => {
          const shifted = [...values];
          shifted[i]! += delta;
          const replacement = tensor(Float64Array.from(shifted), { shape: t.shape });
          noGrad(() => t.copyFrom(replacement));
          replacement.dispose();
          return lossOf();
        };
        const numeric = (at(h) - at(-h)) / (2 * h);
        at(0);
        expect(Math.abs(grad[i]! - numeric), `${name}[${i}]: ${grad[i]} vs ${numeric}`).toBeLessThan(1e-6 * Math.max(1, Math.abs(numeric)));
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(variant === "gpt2" ? 24 : 42);
    // The frozen base gets no gradient.
    const base = model.parameters();
    for (const p of base.values()) {
      expect(p.requiresGrad).toBe(false);
      expect(p.grad).toBeNull();
      p.dispose();
    }
    for (const t of [ids, mask, weights, logits, loss, ...Object.values(tensors)]) t.dispose();
  });
});

describe("merging", () => {
  test.each(["llama", "gpt2"] as const)("%s: merged weights (in place, and as save() writes them) give the unmerged logits within 1e-6 relative (float32)", async (variant) => {
    const dir = await fixture(variant, `${variant}-merge`);
    using model = await CausalLM.load(dir);
    model.addAdapter({ r: 4, alpha: 8, targetModules: "all-linear" });
    randomizeAdapter(model, 0.05);
    const unmerged = logitsOf(model);
    // float32 rounding of W + s·B·A against W x + s·B(A x): relative to the logits' size.
    const tolerance = 1e-6 * Math.max(1, ...unmerged.map(Math.abs));
    const base = await CausalLM.load(dir);
    expect(maxDiff(unmerged, logitsOf(base))).toBeGreaterThan(1e-2); // the adapter matters
    base.dispose();
    const saved = path.join(root, `${variant}-merged`);
    await model.save(saved);
    using reloaded = await CausalLM.load(saved);
    expect(maxDiff(logitsOf(reloaded), unmerged)).toBeLessThan(tolerance);
    expect(model.adapter).not.toBeNull(); // save() merges a copy
    model.mergeAdapter();
    expect(model.adapter).toBeNull();
    expect(model.adapterTensors()).toBeNull();
    expect(maxDiff(logitsOf(model), unmerged)).toBeLessThan(tolerance);
  });
});

describe("PEFT format", () => {
  test("save → load → save is byte-stable, and the loaded adapter gives the same logits", async () => {
    const dir = await fixture("llama", "llama-roundtrip");
    using model = await CausalLM.load(dir);
    model.addAdapter({ r: 3, alpha: 12, dropout: 0.1, targetModules: ["q_proj", "down_proj"] });
    randomizeAdapter(model, 0.2);
    const first = path.join(root, "adapter-1");
    await model.saveAdapter(first);
    const config = JSON.parse(readFileSync(path.join(first, "adapter_config.json"), "utf8"));
    expect(config).toMatchObject({ peft_type: "LORA", r: 3, lora_alpha: 12, lora_dropout: 0.1, target_modules: ["q_proj", "down_proj"], task_type: "CAUSAL_LM", bias: "none" });
    using other = await CausalLM.load(dir);
    const loaded = await other.loadAdapter(first);
    expect(loaded.modules).toEqual(model.adapter!.modules);
    expect(logitsOf(other)).toEqual(logitsOf(model));
    const second = path.join(root, "adapter-2");
    await other.saveAdapter(second);
    for (const file of ["adapter_config.json", "adapter_model.safetensors"]) {
      expect(readFileSync(path.join(second, file)).equals(readFileSync(path.join(first, file))), file).toBe(true);
    }
  });

  test("CausalLM.load attaches an adapter folder (options.adapter) or a fresh one (options.lora), not both", async () => {
    const dir = await fixture("llama", "llama-load-options");
    using model = await CausalLM.load(dir);
    const base = logitsOf(model);
    const lora = { r: 2, alpha: 4, targetModules: ["v_proj", "up_proj"] };
    const added = model.addAdapter(lora);
    randomizeAdapter(model, 0.2);
    const adapted = logitsOf(model);
    expect(maxDiff(adapted, base)).toBeGreaterThan(1e-3);
    const adapterDir = path.join(root, "load-options-adapter");
    await model.saveAdapter(adapterDir);

    using loaded = await CausalLM.load(dir, { adapter: adapterDir });
    expect(loaded.adapter!.modules).toEqual(added.modules);
    expect(logitsOf(loaded)).toEqual(adapted);
    using fresh = await CausalLM.load(dir, { lora });
    expect(fresh.adapter).toEqual(added);
    expect(logitsOf(fresh)).toEqual(base); // B is zero
    // Refused before anything is read (the model folder does not exist).
    await expect(CausalLM.load(path.join(root, "no-model"), { adapter: adapterDir, lora })).rejects.toThrow("CausalLM.load: give adapter (a folder to load) or lora (a fresh adapter), not both");
    await expect(CausalLM.load(dir, { adapter: "" })).rejects.toThrow("CausalLM.load: adapter must be a folder path");
    // A model whose adapter fails to attach is freed.
    const dispose = vi.spyOn(CausalLM.prototype, "dispose");
    await expect(CausalLM.load(dir, { lora: { targetModules: ["nope_proj"] } })).rejects.toThrow(/nope_proj/);
    await expect(CausalLM.load(dir, { adapter: path.join(root, "missing-adapter") })).rejects.toThrow(/missing-adapter/);
    expect(dispose).toHaveBeenCalledTimes(2);
    dispose.mockRestore();
  });

  test("a hand-built adapter in PEFT naming loads and adds (α/r)·B·A to its module's weight", async () => {
    const dir = await fixture("llama", "llama-hand");
    using model = await CausalLM.load(dir);
    const [module] = model.linearModules().filter((m) => m.name === "model.layers.1.self_attn.o_proj");
    const r = 2;
    const a = Array.from({ length: r * module!.in }, (_, i) => ((i % 7) - 3) * 0.05);
    const b = Array.from({ length: module!.out * r }, (_, i) => ((i % 5) - 2) * 0.1);
    const adapterDir = path.join(root, "hand-adapter");
    await mkdir(adapterDir, { recursive: true });
    const A = tensor(Float32Array.from(a), { shape: [r, module!.in] });
    const B = tensor(Float32Array.from(b), { shape: [module!.out, r] });
    await saveSafetensors(path.join(adapterDir, "adapter_model.safetensors"), {
      "base_model.model.model.layers.1.self_attn.o_proj.lora_A.weight": A,
      "base_model.model.model.layers.1.self_attn.o_proj.lora_B.weight": B,
    });
    await writeFile(path.join(adapterDir, "adapter_config.json"), JSON.stringify({ peft_type: "LORA", r, lora_alpha: 5, lora_dropout: 0, target_modules: ["o_proj"], bias: "none" }));
    const weight = model.parameters().get("model.layers.1.self_attn.o_proj.weight")!;
    const before = valuesOf(weight);
    await model.loadAdapter(adapterDir);
    model.mergeAdapter();
    const after = valuesOf(weight);
    const scale = 5 / r;
    for (let o = 0; o < module!.out; o++) {
      for (let i = 0; i < module!.in; i++) {
        let delta = 0;
        for (let k = 0; k < r; k++) delta += b[o * r + k]! * a[k * module!.in + i]!;
        expect(after[o * module!.in + i]).toBeCloseTo(before[o * module!.in + i]! + scale * delta, 6);
      }
    }
    for (const t of [A, B, weight]) t.dispose();
  });

  test("an adapter that does not fit the model is an error naming the tensor or the setting", async () => {
    const dir = await fixture("llama", "llama-bad");
    using model = await CausalLM.load(dir);
    const write = async (name: string, tensors: Record<string, Tensor>, config: object) => {
      const folder = path.join(root, name);
      await mkdir(folder, { recursive: true });
      await saveSafetensors(path.join(folder, "adapter_model.safetensors"), tensors);
      await writeFile(path.join(folder, "adapter_config.json"), JSON.stringify({ peft_type: "LORA", r: 2, lora_alpha: 4, target_modules: ["q_proj"], ...config }));
      return folder;
    };
    const a = tensor(new Float32Array(2 * 16).fill(0.1), { shape: [2, 16] });
    const wrong = tensor(new Float32Array(2 * 9).fill(0.1), { shape: [2, 9] });
    const b = tensor(new Float32Array(16 * 2).fill(0.1), { shape: [16, 2] });
    const prefix = "base_model.model.model.layers.0.self_attn.";
    await expect(model.loadAdapter(await write("bad-shape", { [`${prefix}q_proj.lora_A.weight`]: wrong, [`${prefix}q_proj.lora_B.weight`]: b }, {}))).rejects.toThrow(
      /model.layers.0.self_attn.q_proj: lora_A \[2, 9\] and lora_B \[16, 2\] do not fit/,
    );
    await expect(model.loadAdapter(await write("bad-name", { [`${prefix}qq_proj.lora_A.weight`]: a, [`${prefix}qq_proj.lora_B.weight`]: b }, {}))).rejects.toThrow(
      /adapter tensor model.layers.0.self_attn.qq_proj.lora_A.weight names no LoRA weight of a linear module/,
    );
    await expect(model.loadAdapter(await write("half", { [`${prefix}q_proj.lora_A.weight`]: a }, {}))).rejects.toThrow(/q_proj.lora_A.weight without .lora_B.weight/);
    await expect(model.loadAdapter(await write("dora", { [`${prefix}q_proj.lora_A.weight`]: a, [`${prefix}q_proj.lora_B.weight`]: b }, { use_dora: true }))).rejects.toThrow(/use_dora true is not supported/);
    await expect(model.loadAdapter(path.join(root, "nowhere"))).rejects.toThrow(/cannot read .*adapter_config.json: not found/);
    expect(model.adapter).toBeNull();
    expect(logitsOf(model)).toEqual(logitsOf(model)); // still usable
    for (const t of [a, wrong, b]) t.dispose();
  });
});

describe("training with an adapter", () => {
  async function stepLoss(model: CausalLM, backward: boolean): Promise<number> {
    const collator = new SpinCollator({ tokenizer: tinyTokenizer() });
    const batch = collator.collate([pairOf("hi", "ab", "cd"), pairOf("yo", "abc", "x")]);
    const opponent = tensor(Float32Array.from([-20, -20]));
    const metrics = await spinStep(model, { ...batch, opponentReal: opponent, opponentGenerated: opponent }, { beta: 0.5 }, { backward });
    for (const t of [batch.ids, batch.attentionMask, batch.labels, opponent]) t.dispose();
    return metrics.loss;
  }

  test("dropout acts in training steps only, drawing from libtorch's seeded generator", async () => {
    using model = await CausalLM.load(await fixture("llama", "llama-dropout"));
    model.addAdapter({ r: 4, alpha: 8, dropout: 0.5, targetModules: "all-linear" });
    randomizeAdapter(model, 0.3);
    const evaluation = await stepLoss(model, false);
    expect(await stepLoss(model, false)).toBe(evaluation);
    manualSeed(1);
    const first = await stepLoss(model, true);
    manualSeed(1);
    const again = await stepLoss(model, true);
    manualSeed(2);
    const other = await stepLoss(model, true);
    expect(again).toBe(first);
    expect(other).not.toBe(first);
    expect(first).not.toBe(evaluation);
  });

  test("with dropout (float64): adapter gradients equal central finite differences under the same seed, checkpointed or not", async () => {
    using model = await CausalLM.load(await fixture("llama", "llama-dropout-fd"), { dtype: "float64" });
    model.addAdapter({ r: 2, alpha: 6, dropout: 0.3, targetModules: "all-linear" });
    randomizeAdapter(model, 0.3);
    const collator = new SpinCollator({ tokenizer: tinyTokenizer() });
    const batch = collator.collate([pairOf("hi", "ab", "cd"), pairOf("yo", "abc", "x")]);
    const opponent = tensor(Float64Array.from([-20, -20]), { dtype: "float64" });
    const tensors = model.adapterTensors()!;
    for (const t of Object.values(tensors)) t.requiresGrad = true;
    // Every evaluation reseeds, so it draws the same masks; its own backward's gradients are not read.
    const seededLoss = async (gradientCheckpointing: boolean) => {
      manualSeed(17);
      const metrics = await spinStep(model, { ...batch, opponentReal: opponent, opponentGenerated: opponent }, { beta: 0.5 }, { gradientCheckpointing });
      return metrics.loss;
    };
    const gradients = async (gradientCheckpointing: boolean) => {
      for (const t of Object.values(tensors)) t.zeroGrad();
      await seededLoss(gradientCheckpointing);
      return Object.fromEntries(Object.entries(tensors).map(([name, t]) => [name, valuesOf(t.grad!)]));
    };
    const plain = await gradients(false);
    const checkpointed = await gradients(true);
    for (const name of Object.keys(plain)) expect(maxDiff(checkpointed[name]!, plain[name]!), name).toBeLessThan(1e-12);
    // The step's log-probs and loss are float32 (as in training), so the difference quotient
    // takes a wider h and a 1% bound, not the float64 forward test's 1e-6; a backward that
    // used another mask than the forward would be off by tens of percent.
    const h = 1e-3;
    let checked = 0;
    for (const [name, t] of Object.entries(tensors).filter(([n]) => n.includes("layers.0"))) {
      const values = valuesOf(t);
      const i = Math.floor(values.length / 2);
      const at = async (delta: number) => {
        const shifted = [...values];
        shifted[i]! += delta;
        const replacement = tensor(Float64Array.from(shifted), { shape: t.shape });
        noGrad(() => t.copyFrom(replacement));
        replacement.dispose();
        return seededLoss(false);
      };
      const numeric = ((await at(h)) - (await at(-h))) / (2 * h);
      await at(0);
      expect(Math.abs(plain[name]![i]! - numeric), `${name}[${i}]: ${plain[name]![i]} vs ${numeric}`).toBeLessThan(1e-2 * Math.max(0.1, Math.abs(numeric)));
      checked++;
    }
    expect(checked).toBe(14);
    for (const t of [batch.ids, batch.attentionMask, batch.labels, opponent, ...Object.values(tensors)]) t.dispose();
  });

  test("a bfloat16 base trains a float32 adapter: finite gradients on the adapter only", async () => {
    using model = await CausalLM.load(await fixture("llama", "llama-bf16"), { dtype: "bfloat16" });
    model.addAdapter({ r: 4, alpha: 8, dropout: 0, targetModules: "all-linear" });
    randomizeAdapter(model, 0.1);
    const tensors = model.adapterTensors()!;
    for (const t of Object.values(tensors)) t.requiresGrad = true;
    expect(Number.isFinite(await stepLoss(model, true))).toBe(true);
    for (const [name, t] of Object.entries(tensors)) {
      expect(t.dtype, name).toBe("float32");
      const grad = t.grad!;
      expect(grad.dtype).toBe("float32");
      const values = valuesOf(grad);
      expect(values.every(Number.isFinite), name).toBe(true);
      expect(values.some((v) => v !== 0), name).toBe(true);
      grad.dispose();
      t.dispose();
    }
    for (const [name, p] of model.parameters()) {
      expect(p.dtype, name).toBe("bfloat16");
      expect(p.grad, name).toBeNull();
      p.dispose();
    }
  });

  // libtorch 1.13 has no float16 CPU kernels for SiLU and LayerNorm: float16 models run on 2.x.
  test.runIf(Number(runtimeInfo().torchVersion.split(".")[0]) >= 2).each(["llama", "gpt2"] as const)(
    "%s, float16 base: a frozen base's products give the adapter the same gradients, bit for bit, as a trainable base's",
    async (variant) => {
      // float16 products run in float32 on the CPU (native/model/upcast.h). A frozen weight's
      // backward converts it again instead of keeping the float32 copy; a trainable one keeps it.
      using model = await CausalLM.load(await fixture(variant, `${variant}-f16`), { dtype: "float16" });
      model.addAdapter({ r: 4, alpha: 8, dropout: 0, targetModules: "all-linear" });
      randomizeAdapter(model, 0.1);
      const tensors = model.adapterTensors()!;
      for (const t of Object.values(tensors)) t.requiresGrad = true;
      const gradients = async () => {
        for (const t of Object.values(tensors)) t.zeroGrad();
        await stepLoss(model, true);
        return Object.fromEntries(Object.entries(tensors).map(([name, t]) => [name, valuesOf(t.grad!)]));
      };
      const frozen = await gradients();
      const base = [...model.parameters().values()];
      for (const p of base) p.requiresGrad = true;
      const trainable = await gradients();
      expect(Object.keys(frozen).length).toBeGreaterThan(0);
      for (const [name, values] of Object.entries(frozen)) {
        expect(values.some((v) => v !== 0), name).toBe(true);
        expect(values, name).toEqual(trainable[name]);
      }
      for (const p of base) {
        p.requiresGrad = false;
        p.dispose();
      }
      for (const t of Object.values(tensors)) t.dispose();
    },
  );

  test.runIf(Number(runtimeInfo().torchVersion.split(".")[0]) >= 2)("float16 base: a frozen weight changed in place between forward and backward is an error, not a gradient of other weights", async () => {
    using model = await CausalLM.load(await fixture("llama", "llama-f16-inplace"), { dtype: "float16" });
    model.addAdapter({ r: 4, alpha: 8, dropout: 0, targetModules: "all-linear" });
    randomizeAdapter(model, 0.1);
    const tensors = model.adapterTensors()!;
    for (const t of Object.values(tensors)) t.requiresGrad = true;
    const ids = tensor(IDS, { dtype: "int64" });
    const mask = ones([2, 7], { dtype: "int64" });
    const logits = model.forward(ids, mask);
    const loss = logits.to("float32").sum();
    const weight = model.parameters().get("model.layers.1.mlp.down_proj.weight")!;
    const doubled = weight.mul(2);
    noGrad(() => weight.copyFrom(doubled));
    expect(() => loss.backward()).toThrow(/modified by an inplace operation/);
    for (const t of [ids, mask, logits, loss, weight, doubled, ...Object.values(tensors)]) t.dispose();
  });

  test("SPIN updates only the adapter: the base stays bit for bit, the optimizer state is adapter-sized", async () => {
    const dir = await fixture("llama", "llama-train");
    using model = await CausalLM.load(dir);
    model.addAdapter({ r: 2, alpha: 4, dropout: 0.1, targetModules: "all-linear", seed: 3 });
    const base = new Map([...model.parameters()].map(([name, t]) => [name, valuesOf(t)]));
    const before = Object.fromEntries(Object.entries(model.adapterTensors()!).map(([name, t]) => [name, valuesOf(t)]));
    const optimizer = new Optimizer(model, { kind: "rmsprop" });
    const state = optimizer.state();
    expect(Object.keys(state).sort()).toEqual(Object.keys(before).map((name) => `${name}.square_avg`).sort());
    for (const t of Object.values(state)) t.dispose();
    optimizer.dispose();
    const rows = [pairOf("hi", "ab", "cd"), pairOf("yo", "abc", "x"), pairOf("q", "no", "nope"), pairOf("hey", "okay", "ok")];
    const trainer = new SpinTrainer({
      model,
      tokenizer: tinyTokenizer(),
      config: { outputDir: path.join(root, "train-run"), maxSteps: 3, perDeviceTrainBatchSize: 2, learningRate: 1e-2, warmupRatio: 0, saveStrategy: "no", gradientCheckpointing: true },
    });
    await trainer.train(rows);
    trainer.dispose();
    for (const [name, t] of model.parameters()) {
      expect(valuesOf(t), name).toEqual(base.get(name));
      t.dispose();
    }
    const after = model.adapterTensors()!;
    const changed = Object.entries(after).filter(([name, t]) => maxDiff(valuesOf(t), before[name]!) > 0);
    expect(changed.length).toBe(Object.keys(after).length);
    for (const t of Object.values(after)) t.dispose();
  });
});
