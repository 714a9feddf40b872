// CausalLM against an independent float64 reference (test/reference-model.ts) for every
// supported architecture and the llama variants: full forward in float32 and float64, KV-cache
// decoding, left/right padded batches, logitsAt, response log-probs, gradient checkpointing,
// forwardAsync, tied embeddings and GPT-2 hub-style names.
//
// Tolerances (stated once, used throughout):
//   float32 model vs float64 reference: max|a − b| / max|b| ≤ 1e-5 over the compared logits.
//   float64 model vs float64 reference: the same measure ≤ 1e-10.
//   KV cache / padded batches vs the reference: the same 1e-5 measure (float32 model).
//   logitsAt vs the full forward's logits at those positions: 1e-6 (same float32 computation).
//   forwardAsync vs forward: exactly equal.
//   log-probs: |a − b| ≤ 1e-5 · max(1, |b|) per row, b computed in float64 from the reference.
//   gradient checkpointing: max|g_ckpt − g| ≤ 1e-6 · max(1, max|g|) for every parameter.
import { readFileSync } from "node:fs";
import path from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { CausalLM, type Tensor, loadSafetensors, noGrad, ones, randn, saveSafetensors, scope, tensor } from "../lib/index.js";
import { VARIANTS, type Variant, VOCAB, removeRoot, tempRoot, writeFixture } from "./fixtures.js";
import { pseudoRandom, valuesOf } from "./helpers.js";
import { ReferenceModel, logSoftmaxRow } from "./reference-model.js";

const TOL32 = 1e-5;
const TOL64 = 1e-10;
const LP_TOL = 1e-5;
const GRAD_TOL = 1e-6;

const root = tempRoot("model");
afterAll(() => removeRoot(root));

const int64 = (data: number[][]) => tensor(data, { dtype: "int64" });

/** Deterministic token ids in [0, VOCAB). */
function tokens(count: number, seed: number): number[] {
  return pseudoRandom(count, seed).map((v) => Math.floor(((v + 1) / 2) * VOCAB) % VOCAB);
}

/** max|a − b| / max|b|. */
function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  expect(actual.length).toBe(expected.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!);
    diff = Number.isNaN(d) ? Infinity : Math.max(diff, d);
    scale = Math.max(scale, Math.abs(expected[i]!));
  }
  return diff / scale;
}

function expectRelative(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  const err = relativeError(actual, expected);
  expect(err, `${what}: relative error ${err.toExponential(3)} > ${tol}`).toBeLessThanOrEqual(tol);
}

/** Logits [B, T, V] as nested JS rows: out[b][t] = number[V]. */
function logitRows(logits: Tensor): number[][][] {
  const [B, T, V] = logits.shape as [number, number, number];
  const flat = valuesOf(logits);
  return Array.from({ length: B }, (_, b) => Array.from({ length: T }, (_, t) => flat.slice((b * T + t) * V, (b * T + t + 1) * V)));
}

function forwardRows(model: CausalLM, ids: number[][], mask: number[][], options: Parameters<CausalLM["forward"]>[2] = {}): number[][][] {
  return scope(() => logitRows(model.forward(int64(ids), int64(mask), options)));
}

interface Padded {
  ids: number[][];
  mask: number[][];
  /** slot of each row's first real token */
  offset: number[];
}

function pad(seqs: number[][], side: "left" | "right", padId = 0): Padded {
  const T = Math.max(...seqs.map((s) => s.length));
  const out: Padded = { ids: [], mask: [], offset: [] };
  for (const s of seqs) {
    const n = T - s.length;
    const fill = new Array<number>(n).fill(padId);
    const zeros = new Array<number>(n).fill(0);
    const ones_ = new Array<number>(s.length).fill(1);
    out.ids.push(side === "left" ? [...fill, ...s] : [...s, ...fill]);
    out.mask.push(side === "left" ? [...zeros, ...ones_] : [...ones_, ...zeros]);
    out.offset.push(side === "left" ? n : 0);
  }
  return out;
}

const SEQ = tokens(9, 7);
const ROWS = [tokens(8, 11), tokens(5, 12), tokens(3, 13), tokens(1, 14)];

describe.each(VARIANTS)("%s", (variant: Variant) => {
  const dir = path.join(root, variant);
  let ref: ReferenceModel;
  let model: CausalLM;
  const refCache = new Map<string, number[][]>();
  const refLogits = (ids: number[]): number[][] => {
    const key = ids.join(",");
    if (!refCache.has(key)) refCache.set(key, ref.logits(ids));
    return refCache.get(key)!;
  };

  beforeAll(async () => {
    await writeFixture(dir, variant);
    ref = await ReferenceModel.load(dir);
    model = await CausalLM.load(dir);
  });
  afterAll(() => {
    ref?.dispose();
    model?.dispose();
  });

  test("float32 forward matches the float64 reference (1e-5 relative)", () => {
    expect(model.dtype).toBe("float32");
    const logits = scope(() => {
      const out = model.forward(int64([SEQ]), int64([SEQ.map(() => 1)]));
      expect(out.shape).toEqual([1, SEQ.length, VOCAB]);
      expect(out.dtype).toBe("float32");
      return logitRows(out);
    });
    expectRelative(logits[0]!.flat(), refLogits(SEQ).flat(), TOL32, "float32 logits");
  });

  test("float64 load matches the float64 reference (1e-10 relative)", async () => {
    using model64 = await CausalLM.load(dir, { dtype: "float64" });
    for (const t of model64.parameters().values()) {
      expect(t.dtype).toBe("float64");
      t.dispose();
    }
    const logits = forwardRows(model64, [SEQ], [SEQ.map(() => 1)]);
    expectRelative(logits[0]!.flat(), refLogits(SEQ).flat(), TOL64, "float64 logits");
  });

  test("float64 left-padded batch gives each row's unpadded result (no NaN from masked pad rows)", async () => {
    using model64 = await CausalLM.load(dir, { dtype: "float64" });
    const batch = pad(ROWS.slice(0, 3), "left");
    const out = forwardRows(model64, batch.ids, batch.mask);
    ROWS.slice(0, 3).forEach((seq, b) => {
      const real = out[b]!.slice(batch.offset[b]!).flat();
      // The precision bound here is the float32 one: this test is about masking, not precision.
      expectRelative(real, refLogits(seq).flat(), TOL32, `row ${b}`);
    });
  });

  test("KV-cache decoding (prefill, then one token at a time, then a 2-token chunk) equals the full forward", () => {
    const full = forwardRows(model, [SEQ], [SEQ.map(() => 1)])[0]!;
    using cache = model.newCache(1, SEQ.length + 2);
    expect(cache.capacity).toBe(SEQ.length + 2);
    expect(cache.length).toBe(0);
    const steps: number[][] = [];
    const prefill = 3;
    const chunks = [[0, prefill], [3, 4], [4, 5], [5, 6], [6, 7], [7, 9]] as const;
    for (const [start, end] of chunks) {
      const mask = [new Array<number>(end).fill(1)];
      const rows = forwardRows(model, [SEQ.slice(start, end)], mask, { cache })[0]!;
      expect(rows.length).toBe(end - start);
      steps.push(...rows);
      expect(cache.length).toBe(end);
    }
    expectRelative(steps.flat(), full.flat(), TOL32, "cached vs full");
    expectRelative(steps.flat(), refLogits(SEQ).flat(), TOL32, "cached vs reference");

    // reset() empties the cache for reuse: the same decode again gives the same numbers.
    cache.reset();
    expect(cache.length).toBe(0);
    const again = forwardRows(model, [SEQ.slice(0, prefill)], [new Array<number>(prefill).fill(1)], { cache })[0]!;
    expectRelative(again.flat(), full.slice(0, prefill).flat(), TOL32, "after reset");
  });

  test("forwards without autograd (fused norm and RoPE; one-token steps through the matrix-vector path) match the float64 reference", () => {
    using cache = model.newCache(1, SEQ.length);
    const steps: number[][] = [];
    const full = noGrad(() => {
      for (let t = 0; t < SEQ.length; t++) steps.push(forwardRows(model, [[SEQ[t]!]], [new Array<number>(t + 1).fill(1)], { cache })[0]![0]!);
      return forwardRows(model, [SEQ], [SEQ.map(() => 1)])[0]!;
    });
    expectRelative(steps.flat(), refLogits(SEQ).flat(), TOL32, "one-row steps vs reference");
    expectRelative(full.flat(), refLogits(SEQ).flat(), TOL32, "full forward vs reference");
  });

  test("KV-cache decoding of a left-padded batch equals each row's unpadded reference", () => {
    const seqs = [SEQ.slice(0, 6), SEQ.slice(2, 5)];
    const batch = pad(seqs, "left");
    const T = batch.ids[0]!.length;
    using cache = model.newCache(2, T + 2);
    const prefill = forwardRows(model, batch.ids, batch.mask, { cache });
    // then two more tokens per row
    const extra = [tokens(2, 21), tokens(2, 22)];
    const stepped: number[][][] = [[], []];
    for (let s = 0; s < 2; s++) {
      const mask = batch.mask.map((m) => [...m, ...new Array<number>(s + 1).fill(1)]);
      const out = forwardRows(model, extra.map((e) => [e[s]!]), mask, { cache });
      out.forEach((rows, b) => stepped[b]!.push(rows[0]!));
    }
    seqs.forEach((seq, b) => {
      const whole = [...seq, ...extra[b]!];
      const expected = refLogits(whole);
      const got = [...prefill[b]!.slice(batch.offset[b]!), ...stepped[b]!];
      expectRelative(got.flat(), expected.flat(), TOL32, `row ${b}`);
    });
  });

  for (const side of ["right", "left"] as const) {
    test(`${side}-padded batch: each row equals its unpadded reference at its real positions`, () => {
      const batch = pad(ROWS, side, 5);
      const out = forwardRows(model, batch.ids, batch.mask);
      ROWS.forEach((seq, b) => {
        const real = out[b]!.slice(batch.offset[b]!, batch.offset[b]! + seq.length).flat();
        expectRelative(real, refLogits(seq).flat(), TOL32, `row ${b} (length ${seq.length})`);
      });
      // Explicit positions equal to the mask-derived ones give the same logits.
      const positions = batch.mask.map((m) => {
        let p = -1;
        return m.map((v) => (p += v) < 0 ? 0 : p);
      });
      const explicit = scope(() => forwardRows(model, batch.ids, batch.mask, { positions: int64(positions) }));
      ROWS.forEach((seq, b) => {
        const a = explicit[b]!.slice(batch.offset[b]!, batch.offset[b]! + seq.length).flat();
        expectRelative(a, refLogits(seq).flat(), TOL32, `row ${b} with explicit positions`);
      });
    });
  }

  test("logitsAt gives the full logits at those positions", () => {
    const batch = pad(ROWS.slice(0, 3), "right");
    const full = forwardRows(model, batch.ids, batch.mask);
    const at = [[0, 7, 3], [4, 1, 1], [2, 0, 5]];
    const picked = scope(() => {
      const out = model.forward(int64(batch.ids), int64(batch.mask), { logitsAt: int64(at) });
      expect(out.shape).toEqual([3, 3, VOCAB]);
      return logitRows(out);
    });
    at.forEach((positions, b) =>
      positions.forEach((t, k) => {
        expectRelative(picked[b]![k]!, full[b]![t]!, 1e-6, `row ${b} position ${t}`);
      }),
    );
  });

  test("logprobs: per-row sums of log_softmax(reference)[t, label[t+1]] over response tokens", async () => {
    // [prompt length, response length]; the third row has no response, the fourth is all response.
    const shapes = [[3, 4], [2, 2], [4, 0], [0, 5]] as const;
    const seqs = shapes.map(([p, r], i) => tokens(p + r, 30 + i));
    for (const side of ["right", "left"] as const) {
      const batch = pad(seqs, side, 7);
      const labels = batch.ids.map((row, b) => {
        const [p] = shapes[b]!;
        return row.map((id, slot) => {
          const j = slot - batch.offset[b]!; // index in the unpadded sequence
          // Right padding: the all-response row labels its first token too; nothing predicts
          // slot 0, so it must not count. Left padding: a pad slot precedes the first token
          // and would predict it (labels[t+1] at t), so there it is masked like a prompt token.
          const first = side === "right" ? p : Math.max(p, 1);
          return j >= first && j < seqs[b]!.length ? id : -100;
        });
      });
      const expectedSum: number[] = [];
      const expectedTokens: number[] = [];
      const expectedMean: number[] = [];
      seqs.forEach((seq, b) => {
        const [p] = shapes[b]!;
        const logits = refLogits(seq);
        let sum = 0;
        let mean = 0;
        let n = 0;
        for (let j = Math.max(p, 1); j < seq.length; j++) {
          sum += logSoftmaxRow(logits[j - 1]!)[seq[j]!]!;
          mean += logits[j - 1]!.reduce((a, v) => a + v, 0) / VOCAB;
          n++;
        }
        expectedSum.push(sum);
        expectedTokens.push(n);
        expectedMean.push(mean);
      });
      expect(expectedTokens).toEqual([4, 2, 0, 4]);
      const out = await model.logprobs(int64(batch.ids), int64(batch.mask), int64(labels));
      try {
        expect(out.sum.dtype).toBe("float32");
        expect(out.tokens.dtype).toBe("int64");
        expect(valuesOf(out.tokens), side).toEqual(expectedTokens);
        const sums = valuesOf(out.sum);
        const means = valuesOf(out.logitMean);
        expectedSum.forEach((e, b) => {
          expect(Math.abs(sums[b]! - e), `${side} row ${b}: sum ${sums[b]} vs ${e}`).toBeLessThanOrEqual(LP_TOL * Math.max(1, Math.abs(e)));
          expect(Math.abs(means[b]! - expectedMean[b]!), `${side} row ${b} logitMean`).toBeLessThanOrEqual(LP_TOL * Math.max(1, Math.abs(expectedMean[b]!)));
        });
        expect(sums[2]).toBe(0);
        expect(means[2]).toBe(0);
      } finally {
        out.sum.dispose();
        out.tokens.dispose();
        out.logitMean.dispose();
      }
    }
  });

  for (const loss of ["logprobs", "forward"] as const) {
    test(`gradient checkpointing gives the same parameter gradients (loss from ${loss})`, async () => {
      using fresh = await CausalLM.load(dir);
      const params = fresh.parameters();
      for (const p of params.values()) p.requireGrad();
      const batch = pad(ROWS.slice(0, 3), "right");
      const labels = batch.ids.map((row, b) => row.map((id, t) => (t >= 1 && batch.mask[b]![t] === 1 ? id : -100)));

      const gradsOf = async (checkpoint: boolean): Promise<Map<string, number[]>> => {
        for (const p of params.values()) p.zeroGrad();
        if (loss === "logprobs") {
          const lp = await fresh.logprobs(int64(batch.ids), int64(batch.mask), int64(labels), { checkpoint });
          scope(() => lp.sum.mul(tensor([1, -0.5, 2])).sum().backward());
          for (const t of [lp.sum, lp.tokens, lp.logitMean]) t.dispose();
        } else {
          scope(() => {
            const logits = fresh.forward(int64(batch.ids), int64(batch.mask), { checkpoint });
            logits.logSoftmax(-1).select(2, 3).mean().add(logits.square().mean().mul(0.01)).backward();
          });
        }
        const grads = new Map<string, number[]>();
        for (const [name, p] of params) {
          const g = p.grad;
          expect(g, `${name} has a gradient`).not.toBeNull();
          grads.set(name, valuesOf(g!));
          g!.dispose();
        }
        return grads;
      };
      try {
        const plain = await gradsOf(false);
        const checkpointed = await gradsOf(true);
        let nonzero = 0;
        for (const [name, g] of plain) {
          const c = checkpointed.get(name)!;
          const scale = Math.max(1, ...g.map(Math.abs));
          const diff = Math.max(...g.map((v, i) => Math.abs(v - c[i]!)));
          expect(diff, `${name}: max |diff| ${diff}`).toBeLessThanOrEqual(GRAD_TOL * scale);
          if (g.some((v) => v !== 0)) nonzero++;
        }
        expect(nonzero).toBe(params.size); // every parameter takes part
      } finally {
        for (const p of params.values()) p.dispose();
      }
    });
  }

  test("forwardAsync equals forward", async () => {
    const batch = pad(ROWS, "left");
    const sync = forwardRows(model, batch.ids, batch.mask);
    const ids = int64(batch.ids);
    const mask = int64(batch.mask);
    const logits = await model.forwardAsync(ids, mask);
    const asyncRows = logitRows(logits);
    for (const t of [ids, mask, logits]) t.dispose();
    expect(asyncRows).toEqual(sync);

    // With a KV cache: the same decode through forwardAsync and forward.
    const decode = async (useAsync: boolean): Promise<number[][]> => {
      using cache = model.newCache(1, SEQ.length);
      const rows: number[][] = [];
      for (const [start, end] of [[0, 4], [4, 5], [5, 9]] as const) {
        const stepIds = int64([SEQ.slice(start, end)]);
        const stepMask = int64([new Array<number>(end).fill(1)]);
        const out = useAsync ? await model.forwardAsync(stepIds, stepMask, { cache }) : model.forward(stepIds, stepMask, { cache });
        rows.push(...logitRows(out)[0]!);
        for (const t of [stepIds, stepMask, out]) t.dispose();
      }
      return rows;
    };
    expect(await decode(true)).toEqual(await decode(false));
  });
});

describe("tied embeddings", () => {
  test.each(["llama-tied", "gpt2"] as const)("%s: the head is the embedding matrix; save writes no lm_head.weight", async (variant) => {
    const dir = path.join(root, `tied-${variant}`);
    const config = await writeFixture(dir, variant);
    expect(config.tie_word_embeddings).toBe(true);
    using model = await CausalLM.load(dir);
    expect(model.config.tieWordEmbeddings).toBe(true);
    const params = model.parameters();
    expect(params.has("lm_head.weight")).toBe(false);
    const embedName = variant === "gpt2" ? "transformer.wte.weight" : "model.embed_tokens.weight";
    const embed = params.get(embedName)!;
    // Final hidden state → logits is exactly hidden @ embed^T: perturbing one embedding row in
    // place changes that vocabulary column of every logit (and the input embedding of that token).
    const ids = [[1, 2, 3]];
    const before = forwardRows(model, ids, [[1, 1, 1]]);
    const target = 40; // not among the ids
    scope(() => embed.select(0, target).copyFrom(embed.select(0, target).mul(2)));
    const after = forwardRows(model, ids, [[1, 1, 1]]);
    for (let t = 0; t < 3; t++) {
      for (let v = 0; v < VOCAB; v++) {
        if (v === target) expect(Math.abs(after[0]![t]![v]! - 2 * before[0]![t]![v]!)).toBeLessThan(1e-5);
        else expect(after[0]![t]![v]).toBe(before[0]![t]![v]);
      }
    }
    for (const t of params.values()) t.dispose();
    const out = path.join(root, `tied-${variant}-saved`);
    await model.save(out);
    const header = readHeaderNames(path.join(out, "model.safetensors"));
    expect(header).not.toContain("lm_head.weight");
    expect(header).toContain(embedName);
  });

  test("a tied checkpoint that also stores lm_head.weight uses the embedding as the head", async () => {
    const plainDir = path.join(root, "tied-plain");
    const extraDir = path.join(root, "tied-extra");
    await writeFixture(plainDir, "llama-tied");
    await writeFixture(extraDir, "llama-tied");
    // Add a different lm_head.weight to the second folder.
    const tensors = await loadSafetensors(path.join(extraDir, "model.safetensors"));
    const all = { ...tensors, "lm_head.weight": randn([VOCAB, 16]) };
    const copy = Object.fromEntries(Object.entries(all).map(([n, t]) => [n, t.clone()]));
    for (const t of Object.values(all)) t.dispose();
    await saveSafetensors(path.join(extraDir, "model.safetensors"), copy);
    for (const t of Object.values(copy)) t.dispose();
    using a = await CausalLM.load(plainDir);
    using b = await CausalLM.load(extraDir);
    const ids = [SEQ];
    const mask = [SEQ.map(() => 1)];
    expect(forwardRows(b, ids, mask)).toEqual(forwardRows(a, ids, mask));
  });
});

describe("gpt2 hub-style names", () => {
  test("names without 'transformer.' and attn.bias / attn.masked_bias buffers load the same model", async () => {
    const plainDir = path.join(root, "gpt2-plain");
    const hubDir = path.join(root, "gpt2-hub");
    await writeFixture(plainDir, "gpt2");
    await writeFixture(hubDir, "gpt2", { gpt2HubNames: true });
    const names = readHeaderNames(path.join(hubDir, "model.safetensors"));
    expect(names).toContain("wte.weight");
    expect(names).toContain("h.0.attn.bias");
    expect(names).toContain("h.1.attn.masked_bias");
    expect(names.some((n) => n.startsWith("transformer."))).toBe(false);
    using a = await CausalLM.load(plainDir);
    using b = await CausalLM.load(hubDir);
    const pa = a.parameters();
    const pb = b.parameters();
    expect([...pb.keys()].sort()).toEqual([...pa.keys()].sort());
    expect([...pb.keys()].every((n) => n.startsWith("transformer."))).toBe(true);
    for (const t of [...pa.values(), ...pb.values()]) t.dispose();
    const batch = pad(ROWS, "right");
    expect(forwardRows(b, batch.ids, batch.mask)).toEqual(forwardRows(a, batch.ids, batch.mask));
    using ref = await ReferenceModel.load(hubDir);
    expectRelative(forwardRows(b, [SEQ], [SEQ.map(() => 1)])[0]!.flat(), ref.logits(SEQ).flat(), TOL32, "hub gpt2 vs reference");
  });
});

describe("sliding window and rope settings take effect", () => {
  // Guards against a reference and a library that agree because both ignore a setting: the
  // reference with the setting removed must differ from the model.
  test.each([
    ["mistral", { sliding_window: null }],
    ["llama-rope-linear", { rope_scaling: null }],
    ["llama-rope-llama3", { rope_scaling: null }],
  ] as const)("%s differs from the same weights with %o", async (variant, override) => {
    const dir = path.join(root, `${variant}-effect`);
    await writeFixture(dir, variant);
    const altDir = path.join(root, `${variant}-effect-alt`);
    await writeFixture(altDir, variant, { config: override });
    using model = await CausalLM.load(dir);
    using alt = await ReferenceModel.load(altDir);
    const got = forwardRows(model, [SEQ], [SEQ.map(() => 1)])[0]!.flat();
    expect(relativeError(got, alt.logits(SEQ).flat())).toBeGreaterThan(1e-3);
  });

  test("qwen2 ignores sliding_window when use_sliding_window is false, applies it when true", async () => {
    const dir = path.join(root, "qwen2-window");
    await writeFixture(dir, "qwen2");
    const json = JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8")) as Record<string, unknown>;
    expect(json.use_sliding_window).toBe(false);
    expect(json.sliding_window).toBe(2);
    using model = await CausalLM.load(dir);
    expect(model.config.slidingWindow).toBeNull();
    // The same weights with use_sliding_window true (max_window_layers 0: every layer slides).
    const onDir = path.join(root, "qwen2-window-on");
    await writeFixture(onDir, "qwen2", { config: { use_sliding_window: true, max_window_layers: 0 } });
    using on = await CausalLM.load(onDir);
    using ref = await ReferenceModel.load(onDir);
    expect(on.config.slidingWindow).toBe(2);
    const got = forwardRows(on, [SEQ], [SEQ.map(() => 1)])[0]!.flat();
    expectRelative(got, ref.logits(SEQ).flat(), TOL32, "qwen2 with a sliding window");
    expect(relativeError(forwardRows(model, [SEQ], [SEQ.map(() => 1)])[0]!.flat(), got)).toBeGreaterThan(1e-3);
  });

  test("qwen2 with use_sliding_window slides only in layers ≥ max_window_layers", async () => {
    const dir = path.join(root, "qwen2-window-layers");
    await writeFixture(dir, "qwen2", { config: { use_sliding_window: true, max_window_layers: 1 } });
    using model = await CausalLM.load(dir);
    using ref = await ReferenceModel.load(dir);
    expectRelative(forwardRows(model, [SEQ], [SEQ.map(() => 1)])[0]!.flat(), ref.logits(SEQ).flat(), TOL32, "layer 0 full, layer 1 sliding");
  });

  test("mistral without sliding_window in config.json takes transformers' default (4096)", async () => {
    const dir = path.join(root, "mistral-default-window");
    await writeFixture(dir, "mistral", { config: { sliding_window: undefined } });
    expect(JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8"))).not.toHaveProperty("sliding_window");
    using model = await CausalLM.load(dir);
    expect(model.config.slidingWindow).toBe(4096);
  });
});

test("inference under noGrad builds no graph", async () => {
  const dir = path.join(root, "llama-nograd");
  await writeFixture(dir, "llama");
  using model = await CausalLM.load(dir);
  const params = model.parameters();
  for (const p of params.values()) p.requireGrad();
  noGrad(() =>
    scope(() => {
      const out = model.forward(int64([SEQ]), ones([1, SEQ.length], { dtype: "int64" }));
      expect(out.requiresGrad).toBe(false);
    }),
  );
  for (const p of params.values()) p.dispose();
});

/** Tensor names of a safetensors file, read with plain fs + JSON.parse. */
function readHeaderNames(file: string): string[] {
  const bytes = readFileSync(file);
  const length = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + length).toString("utf8")) as Record<string, unknown>;
  return Object.keys(header).filter((k) => k !== "__metadata__");
}
