// Thread-pool workloads for choosing the OpenBLAS build and the OpenMP wait policy
// (README, "Threads and BLAS"). Each mimics a phase of SPIN on this machine's shapes:
// batch-1 decoding (matrix-vector products, bench-60m widths), a small training step
// (bench-tiny widths, forward + backward), and a large matmul.
import { randn, scope } from "../lib/index.js";
import type { Row } from "./report.js";
import { time } from "./timing.js";

/** One token through 8 layers of a 512-wide SwiGLU decoder, as matrix-vector products. */
async function decodeRow(): Promise<Row> {
  const hidden = 512;
  const intermediate = 1536;
  const layers = Array.from({ length: 8 }, () => ({
    qkvo: randn([hidden, 4 * hidden]).mul(0.02),
    gateUp: randn([hidden, 2 * intermediate]).mul(0.02),
    down: randn([intermediate, hidden]).mul(0.02),
  }));
  const head = randn([hidden, 32000]).mul(0.02);
  const x = randn([1, hidden]);
  const tokens = 32;
  const t = await time(() =>
    scope(() => {
      for (let token = 0; token < tokens; token++) {
        let h = x;
        for (const layer of layers) {
          const qkvo = h.matmul(layer.qkvo);
          h = h.add(qkvo.slice(1, 0, hidden));
          const gateUp = h.matmul(layer.gateUp);
          const act = gateUp.slice(1, 0, intermediate).silu().mul(gateUp.slice(1, intermediate));
          h = h.add(act.matmul(layer.down));
        }
        h.matmul(head).argmax(-1);
      }
    }),
  );
  for (const layer of layers) Object.values(layer).forEach((w) => w.dispose());
  head.dispose();
  x.dispose();
  return { name: "decode b=1 (60m widths)", "ms/token": (t.median / tokens) * 1000 };
}

/** Forward + backward of a 2-layer 64-wide MLP over 8×128 tokens (bench-tiny widths). */
async function tinyStepRow(): Promise<Row> {
  const w1 = randn([64, 128]).mul(0.1).requireGrad();
  const w2 = randn([128, 64]).mul(0.1).requireGrad();
  const head = randn([64, 320]).mul(0.1).requireGrad();
  const x = randn([8 * 128, 64]);
  const t = await time(
    () =>
      scope(() => {
        for (let step = 0; step < 10; step++) {
          const h = x.matmul(w1).silu().matmul(w2).add(x);
          h.matmul(head).logSoftmax(-1).mean().backward();
        }
      }),
    7,
  );
  for (const w of [w1, w2, head, x]) w.dispose();
  return { name: "tiny fwd+bwd (64 wide)", "ms/step": (t.median / 10) * 1000 };
}

async function bigMatmulRow(): Promise<Row> {
  const a = randn([1024, 1024]);
  const b = randn([1024, 1024]);
  const t = await time(() => a.matmul(b).dispose(), 15);
  a.dispose();
  b.dispose();
  return { name: "matmul 1024 f32", "GFLOP/s": (2 * 1024 ** 3) / t.median / 1e9 };
}

export async function measureThreads(): Promise<Row[]> {
  return [await decodeRow(), await tinyStepRow(), await bigMatmulRow()];
}
