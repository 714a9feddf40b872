// Device and precision paths: bf16 autocast with float32 master weights (CPU here), and,
// where libtorch has CUDA and a GPU is visible (scripts/gpu-check.sh sets SPIN_TEST_DEVICE),
// the same computations on the GPU compared with the CPU.
import path from "node:path";

import { afterAll, describe, expect, test } from "vitest";

import { CausalLM, cudaAvailable, noGrad, ones, randn, scope, spinStep, tensor } from "../lib/index.js";
import { removeRoot, tempRoot, writeFixture } from "./fixtures.js";

const root = tempRoot("device");
afterAll(() => removeRoot(root));
const device = process.env.SPIN_TEST_DEVICE ?? "cuda:0";

/** A SPIN batch of 2 pairs over the fixture vocabulary: prompt of 4 tokens, responses of 4. */
function batch() {
  const ids = tensor(
    [
      [1, 2, 3, 4, 10, 11, 12, 13],
      [5, 6, 7, 8, 20, 21, 22, 23],
      [1, 2, 3, 4, 30, 31, 32, 33],
      [5, 6, 7, 8, 40, 41, 42, 43],
    ],
    { dtype: "int64" },
  );
  const labels = tensor(
    [
      [-100, -100, -100, -100, 10, 11, 12, 13],
      [-100, -100, -100, -100, 20, 21, 22, 23],
      [-100, -100, -100, -100, 30, 31, 32, 33],
      [-100, -100, -100, -100, 40, 41, 42, 43],
    ],
    { dtype: "int64" },
  );
  return { ids, labels, mask: ones([4, 8], { dtype: "int64" }) };
}

async function evalLoss(model: CausalLM, autocastBf16: boolean): Promise<number> {
  const { ids, labels, mask } = batch();
  const opponent = tensor([-30, -31]);
  const metrics = await spinStep(model, { ids, attentionMask: mask, labels, opponentReal: opponent, opponentGenerated: opponent }, { beta: 0.1 }, { backward: false, bf16: autocastBf16 });
  for (const t of [ids, labels, mask, opponent]) t.dispose();
  return metrics["logps/real"]!;
}

describe("bf16 autocast (float32 master weights)", () => {
  test("the policy log-probs stay within bf16 rounding of float32, and parameters stay float32", async () => {
    const dir = path.join(root, "llama");
    await writeFixture(dir, "llama");
    using model = await CausalLM.load(dir);
    const exact = await evalLoss(model, false);
    const mixed = await evalLoss(model, true);
    expect(mixed).not.toBe(exact); // autocast really ran in bf16
    expect(Math.abs(mixed - exact)).toBeLessThan(0.05 * Math.abs(exact));
    const parameters = model.parameters();
    expect([...parameters.values()].every((p) => p.dtype === "float32")).toBe(true);
    for (const p of parameters.values()) p.dispose();
  });
});

describe.runIf(cudaAvailable())(`CUDA (${device})`, () => {
  test("tensors round-trip and ops agree with the CPU", () => {
    scope(() => {
      const a = randn([64, 32], { dtype: "float64" });
      const b = randn([32, 16], { dtype: "float64" });
      const onGpu = a.to(device).matmul(b.to(device));
      expect(onGpu.device).toBe(device.includes(":") ? device : `${device}:0`);
      const diff = onGpu.to("cpu").sub(a.matmul(b)).abs().max().item() as number;
      expect(diff).toBeLessThan(1e-10);
    });
  });

  test("bf16 tensors and autograd run on the GPU", () => {
    scope(() => {
      const x = randn([8, 8], { device }).requireGrad();
      x.to("bfloat16").square().sum().to("float32").backward();
      const grad = x.grad!;
      const expected = x.detach().mul(2);
      expect((grad.sub(expected).abs().max().item() as number) < 0.05).toBe(true);
    });
  });

  test("a model on the GPU gives the CPU's logits", async () => {
    const dir = path.join(root, "llama-gpu");
    await writeFixture(dir, "llama");
    using cpu = await CausalLM.load(dir);
    using gpu = await CausalLM.load(dir, { device });
    const ids = tensor([[1, 2, 3, 4, 5]], { dtype: "int64" });
    const mask = ones([1, 5], { dtype: "int64" });
    const diff = noGrad(() => scope(() => gpu.forward(ids, mask).to("cpu").sub(cpu.forward(ids, mask)).abs().max().item() as number));
    expect(diff).toBeLessThan(1e-4);
  });
});
