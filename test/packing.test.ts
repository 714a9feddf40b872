// Packed forwards (no padding; a SPIN pair's common prefix once) and the fused attention kernel
// agree with the padded eager forward, and the log-probs with the float64 reference model.
import path from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { CausalLM, type Tensor, runtimeInfo, spinStep, sftStep, tensor } from "../lib/index.js";
import { type Variant, VOCAB, removeRoot, tempRoot, writeFixture } from "./fixtures.js";
import { catchNative, pseudoRandom, valuesOf } from "./helpers.js";
import { ReferenceModel, logSoftmaxRow } from "./reference-model.js";

const root = tempRoot("packing");
afterAll(() => removeRoot(root));

// libtorch 1.x has no fused attention: there the model stays eager and "sdpa" is refused.
const HAS_SDPA = Number(runtimeInfo().torchVersion.split(".")[0]) >= 2;
const KERNELS = HAS_SDPA ? (["sdpa", "eager"] as const) : (["eager"] as const);
const FAMILIES: readonly Variant[] = ["llama", "llama-gqa", "mistral", "qwen2", "gpt2"];
const LP_TOL = 2e-5; // float32 log-prob sums, relative to max(1, |sum|)
const GRAD_TOL = 1e-4; // float32 gradients, relative to the largest entry of the tensor

function tokens(count: number, seed: number): number[] {
  return pseudoRandom(count, seed).map((v) => Math.floor(((v + 1) / 2) * VOCAB) % VOCAB);
}

// Three pairs (prompt, real, generated): different responses; responses sharing their first two
// tokens; identical responses. The mistral fixture's window (3) crosses the prompt boundary.
const PROMPTS = [tokens(5, 1), tokens(3, 2), tokens(7, 3)];
const SHARED = tokens(2, 4);
const PAIRS: [number[], number[], number[]][] = [
  [PROMPTS[0]!, tokens(4, 5), tokens(6, 6)],
  [PROMPTS[1]!, [...SHARED, ...tokens(3, 7)], [...SHARED, ...tokens(1, 8)]],
  [PROMPTS[2]!, tokens(3, 9), tokens(3, 9)],
];

interface Rows {
  ids: number[][];
  mask: number[][];
  labels: number[][];
  /** each row's (prompt, response) */
  parts: [number[], number[]][];
}

/** [real; generated] rows, padded on `side`, labels on the responses. */
function spinRows(side: "left" | "right"): Rows {
  const parts: [number[], number[]][] = [...PAIRS.map(([p, r]) => [p, r] as [number[], number[]]), ...PAIRS.map(([p, , g]) => [p, g] as [number[], number[]])];
  const width = Math.max(...parts.map(([p, r]) => p.length + r.length));
  const out: Rows = { ids: [], mask: [], labels: [], parts };
  for (const [p, r] of parts) {
    const fill = new Array<number>(width - p.length - r.length).fill(0);
    const ids = [...p, ...r];
    const labels = [...p.map(() => -100), ...r];
    out.ids.push(side === "left" ? [...fill, ...ids] : [...ids, ...fill]);
    out.mask.push(side === "left" ? [...fill, ...ids.map(() => 1)] : [...ids.map(() => 1), ...fill]);
    out.labels.push(side === "left" ? [...fill.map(() => -100), ...labels] : [...labels, ...fill.map(() => -100)]);
  }
  return out;
}

const int64 = (rows: number[][]): Tensor => tensor(rows, { dtype: "int64" });

describe.each(FAMILIES)("%s", (variant) => {
  const dir = path.join(root, variant);
  let model: CausalLM;
  let ref: ReferenceModel;

  beforeAll(async () => {
    await writeFixture(dir, variant);
    model = await CausalLM.load(dir);
    ref = await ReferenceModel.load(dir);
  });
  afterAll(() => {
    model?.dispose();
    ref?.dispose();
  });

  async function logprobSums(rows: Rows, packing: boolean): Promise<number[]> {
    const [ids, mask, labels] = [int64(rows.ids), int64(rows.mask), int64(rows.labels)];
    const out = await model.logprobs(ids, mask, labels, { packing });
    try {
      return valuesOf(out.sum);
    } finally {
      for (const t of [ids, mask, labels, out.sum, out.tokens, out.logitMean]) t.dispose();
    }
  }

  for (const side of ["right", "left"] as const) {
    test(`${side}-padded SPIN rows: packed log-probs, sdpa and eager, equal the float64 reference`, async () => {
      const rows = spinRows(side);
      const expected = rows.parts.map(([p, r]) => {
        const logits = ref.logits([...p, ...r]);
        return r.reduce((sum, id, j) => sum + logSoftmaxRow(logits[p.length + j - 1]!)[id]!, 0);
      });
      for (const kernel of KERNELS) {
        model.attention = kernel;
        for (const packing of [true, false]) {
          const sums = await logprobSums(rows, packing);
          sums.forEach((s, i) => {
            const what = `${kernel}, packing ${packing}, row ${i}: ${s} vs ${expected[i]}`;
            expect(Math.abs(s - expected[i]!), what).toBeLessThanOrEqual(LP_TOL * Math.max(1, Math.abs(expected[i]!)));
          });
        }
      }
      model.attention = KERNELS[0];
    });
  }

  test("a SPIN step packed gives the loss, metrics and gradients of the padded step", async () => {
    const rows = spinRows("right");
    const params = model.parameters();
    for (const p of params.values()) p.requireGrad();
    const run = async (packing: boolean) => {
      for (const p of params.values()) p.zeroGrad();
      const [ids, attentionMask, labels] = [int64(rows.ids), int64(rows.mask), int64(rows.labels)];
      const opponentReal = tensor([-20, -11, -9]);
      const opponentGenerated = tensor([-25, -6, -9]);
      try {
        const metrics = await spinStep(model, { ids, attentionMask, labels, opponentReal, opponentGenerated, identical: [false, false, true] }, { sftWeight: 0.5 }, { packing });
        const grads = new Map<string, number[]>();
        for (const [name, p] of params) {
          const g = p.grad!;
          grads.set(name, valuesOf(g));
          g.dispose();
        }
        return { metrics, grads };
      } finally {
        for (const t of [ids, attentionMask, labels, opponentReal, opponentGenerated]) t.dispose();
      }
    };
    try {
      const padded = await run(false);
      const packed = await run(true);
      for (const [key, value] of Object.entries(padded.metrics)) {
        expect(Math.abs(packed.metrics[key as keyof typeof packed.metrics]! - value), key).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(value)));
      }
      let nonzero = 0;
      for (const [name, g] of padded.grads) {
        const p = packed.grads.get(name)!;
        const scale = Math.max(1e-6, ...g.map(Math.abs));
        const diff = Math.max(...g.map((v, i) => Math.abs(v - p[i]!)));
        expect(diff, `${name}: max |diff| ${diff} (largest ${scale})`).toBeLessThanOrEqual(GRAD_TOL * scale);
        if (g.some((v) => v !== 0)) nonzero++;
      }
      expect(nonzero).toBe(params.size);
    } finally {
      for (const p of params.values()) p.dispose();
    }
  });
});

describe("packing and attention: edges", () => {
  const dir = path.join(root, "edges");
  let model: CausalLM;
  beforeAll(async () => {
    await writeFixture(dir, "llama");
    model = await CausalLM.load(dir);
  });
  afterAll(() => model?.dispose());

  test("the attention kernel: sdpa by default on libtorch 2, settable, checked", () => {
    expect(model.attention).toBe(KERNELS[0]);
    model.attention = "eager";
    expect(model.attention).toBe("eager");
    if (HAS_SDPA) model.attention = "sdpa";
    else expect(catchNative(() => (model.attention = "sdpa")).message).toMatch(/needs libtorch 2/);
    expect(catchNative(() => (model.attention = "flash" as never)).message).toMatch(/attention must be 'sdpa' or 'eager', got 'flash'/);
    expect(model.attention).toBe(KERNELS[0]);
  });

  test.runIf(HAS_SDPA)("sdpa keeps a left-padded forward finite and equal to eager (fully masked padding rows)", () => {
    const ids = int64([[0, 0, 0, 5, 6, 7], [1, 2, 3, 4, 5, 6]]);
    const mask = int64([[0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]]);
    try {
      const logits = (["sdpa", "eager"] as const).map((kernel) => {
        model.attention = kernel;
        const out = model.forward(ids, mask);
        const values = valuesOf(out);
        out.dispose();
        return values;
      });
      model.attention = "sdpa";
      expect(logits[0]!.every(Number.isFinite)).toBe(true);
      const diff = Math.max(...logits[0]!.map((v, i) => Math.abs(v - logits[1]![i]!)));
      expect(diff).toBeLessThan(1e-5);
    } finally {
      ids.dispose();
      mask.dispose();
    }
  });

  test("a label on a padding slot is an error naming it when packing; empty rows score 0", async () => {
    const ids = int64([[1, 2, 3, 0], [4, 5, 0, 0]]);
    const mask = int64([[1, 1, 1, 0], [1, 1, 0, 0]]);
    const bad = int64([[-100, 2, 3, 9], [-100, -100, -100, -100]]);
    const labels = int64([[-100, 2, 3, -100], [-100, -100, -100, -100]]);
    try {
      const error = await model.logprobs(ids, mask, bad).then(() => null, (e: Error) => e);
      expect(error?.message).toMatch(/labels\[0, 3\] = 9 is on a padding slot/);
      const out = await model.logprobs(ids, mask, labels);
      expect(valuesOf(out.tokens)).toEqual([2, 0]);
      expect(valuesOf(out.sum)[1]).toBe(0);
      for (const t of [out.sum, out.tokens, out.logitMean]) t.dispose();
    } finally {
      for (const t of [ids, mask, bad, labels]) t.dispose();
    }
  });

  test("the mask must hold 0 and 1 and match the ids' shape, packed or padded; an unshortenable batch gives the padded numbers", async () => {
    const ids = int64([[1, 2, 3, 4], [5, 6, 7, 8]]);
    const labels = int64([[-100, 2, 3, 4], [-100, -100, 7, 8]]);
    const twos = int64([[1, 1, 2, 1], [1, 1, 1, 1]]);
    const short = int64([[1, 1, 1], [1, 1, 1]]);
    const mask = int64([[1, 1, 1, 1], [1, 1, 1, 1]]);
    try {
      for (const packing of [true, false]) {
        const values = await model.logprobs(ids, twos, labels, { packing }).then(() => null, (e: Error & { code?: string }) => e);
        expect(values?.code).toBe("INVALID_ARGUMENT");
        expect(values?.message).toMatch(/attention mask must hold only 0 and 1/);
        const shape = await model.logprobs(ids, short, labels, { packing }).then(() => null, (e: Error & { code?: string }) => e);
        expect(shape?.code).toBe("SHAPE_MISMATCH");
      }
      // No padding, no pair sharing a first token: packing runs the padded batch, bit for bit.
      const packed = await model.logprobs(ids, mask, labels, { packing: true });
      const padded = await model.logprobs(ids, mask, labels, { packing: false });
      expect(valuesOf(packed.sum)).toEqual(valuesOf(padded.sum));
      for (const out of [packed, padded]) for (const t of [out.sum, out.tokens, out.logitMean]) t.dispose();
    } finally {
      for (const t of [ids, labels, twos, short, mask]) t.dispose();
    }
  });

  test("an SFT step packed equals the padded one", async () => {
    const ids = int64([[1, 2, 3, 4, 5], [6, 7, 8, 0, 0]]);
    const attentionMask = int64([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]);
    const labels = int64([[-100, -100, 3, 4, 5], [-100, 7, 8, -100, -100]]);
    try {
      const [padded, packed] = [await sftStep(model, { ids, attentionMask, labels }, { backward: false, packing: false }), await sftStep(model, { ids, attentionMask, labels }, { backward: false })];
      expect(packed.tokens).toBe(5);
      expect(Math.abs(packed.loss - padded.loss)).toBeLessThan(1e-6 * Math.max(1, padded.loss));
    } finally {
      for (const t of [ids, attentionMask, labels]) t.dispose();
    }
  });
});
