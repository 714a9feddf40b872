// Model workloads of docs/benchmarks.md: log-probs (no grad) on bench-60m, load time of bench-250m,
// and the thread-pool workloads that pick the OpenBLAS build and OpenMP wait policy.
import { CausalLM, arange, full, noGrad, ones, randn, scope, tensor } from "../lib/index.js";
import { SHAPES, benchCheckpoint, parameterCount } from "./checkpoints.js";
import type { Row } from "./report.js";
import { time } from "./timing.js";

/** Random token ids [rows, tokens] below `vocab` (int64). */
function randomIds(rows: number, tokens: number, vocab: number) {
  return scope(() => randn([rows, tokens]).abs().mul(vocab / 4).floor().clamp(0, vocab - 1).to("int64"));
}

/**
 * Summed response log-probs without grad, 8 sequences with the response in their second half:
 * bench-60m × 512 tokens (GEMM-bound) and bench-tiny × 128 (overhead-bound). With
 * BENCH_PEER_PYTHON, transformers on the same shapes (bench/peer/logprobs.py: TRL's
 * computation, a full-vocabulary log-softmax and a gather) in this same run.
 */
export async function logprobsRows(matmulGflops: number): Promise<Row[]> {
  const python = process.env.BENCH_PEER_PYTHON;
  const rows: Row[] = [];
  for (const [name, tokens] of [["bench-60m", 512], ["bench-tiny", 128]] as const) {
    const seconds = await logprobsSeconds(name, 8, tokens);
    const peer = python ? await benchChild("../../bench/peer/logprobs.py", python, [await benchCheckpoint(name), "--rows=8", `--tokens=${tokens}`]) : null;
    const gflops = (2 * parameterCount(SHAPES[name]!) * 8 * tokens) / seconds / 1e9;
    rows.push({
      name: `logprobs ${name} 8x${tokens}`,
      seconds,
      "tokens/s": (8 * tokens) / seconds,
      "GFLOP/s (2·P·tok)": gflops,
      "of matmul peak": gflops / matmulGflops,
      "× peer speed": peer ? Number(peer.seconds) / seconds : Number.NaN,
    });
    if (peer) rows.push({ name: `${String(peer.name)} (torch ${String(peer.torch)})`, seconds: Number(peer.seconds), "tokens/s": (8 * tokens) / Number(peer.seconds) });
  }
  return rows;
}

/** Median seconds of `model.logprobs` over rows × tokens random ids, labels on the second half. */
async function logprobsSeconds(name: string, rows: number, tokens: number): Promise<number> {
  const shape = SHAPES[name]!;
  const model = await CausalLM.load(await benchCheckpoint(name));
  const ids = randomIds(rows, tokens, shape.vocab);
  const mask = ones([rows, tokens], { dtype: "int64" });
  const labels = scope(() => {
    const keep = arange(0, tokens).ge(tokens / 2).unsqueeze(0).expand([rows, tokens]);
    return keep.to("int64").mul(ids).add(keep.logicalNot().to("int64").mul(-100));
  });
  const run = async () => {
    const out = await noGrad(() => model.logprobs(ids, mask, labels));
    for (const t of Object.values(out)) t.dispose();
  };
  const t = await time(run, name === "bench-tiny" ? 20 : 5, 1);
  model.dispose();
  for (const x of [ids, mask, labels]) x.dispose();
  return t.median;
}

/** CausalLM.load of bench-250m, then dispose: owned weights (the default, read into memory) and memory-mapped. */
export async function loadRows(): Promise<Row[]> {
  const dir = await benchCheckpoint("bench-250m");
  const bytes = parameterCount(SHAPES["bench-250m"]!) * 4;
  const rows: Row[] = [];
  for (const mmap of [false, true]) {
    const t = await time(async () => (await CausalLM.load(dir, { mmap })).dispose(), 3, 1);
    rows.push({ name: `load bench-250m (${mmap ? "mmap" : "owned"})`, seconds: t.median, "GB/s": bytes / t.median / 1e9 });
  }
  return rows;
}

/** Greedy batch-1 decoding on bench-60m with the KV cache: 64-token prompt, 32 new tokens. */
async function decodeRow(): Promise<Row> {
  const model = await CausalLM.load(await benchCheckpoint("bench-60m"));
  const prompt = randomIds(1, 64, 32000);
  const newTokens = 32;
  const decode = () =>
    noGrad(() =>
      scope(() => {
        const cache = model.newCache(1, 64 + newTokens);
        let logits = model.forward(prompt, ones([1, 64], { dtype: "int64" }), { cache, logitsAt: full([1, 1], 63, { dtype: "int64" }) });
        for (let i = 0; i < newTokens; i++) {
          const next = logits.argmax(-1);
          logits = model.forward(next, ones([1, cache.length + 1], { dtype: "int64" }), { cache });
        }
        cache.dispose();
      }),
    );
  const t = await time(decode, 5, 1);
  model.dispose();
  return { name: "decode b=1 bench-60m", "ms/token": (t.median / newTokens) * 1000, "min ms/token": (t.min / newTokens) * 1000 };
}

/** Forward + backward of summed response log-probs on bench-tiny, B = 8 × 128 tokens. */
async function tinyStepRow(): Promise<Row> {
  const model = await CausalLM.load(await benchCheckpoint("bench-tiny"));
  const params = [...model.parameters().values()];
  for (const p of params) p.requireGrad();
  const ids = randomIds(8, 128, 320);
  const mask = ones([8, 128], { dtype: "int64" });
  const labels = scope(() => tensor(Array.from({ length: 8 }, () => Array.from({ length: 128 }, (_, i) => (i < 64 ? -100 : 5))), { dtype: "int64" }));
  const step = async () => {
    const out = await model.logprobs(ids, mask, labels);
    scope(() => out.sum.mean().backward());
    for (const t of Object.values(out)) t.dispose();
    for (const p of params) p.zeroGrad();
  };
  const t = await time(step, 15, 3);
  model.dispose();
  return { name: "train step bench-tiny 8x128", "ms/step": t.median * 1000, "min ms/step": t.min * 1000 };
}

export async function threadRows(): Promise<Row[]> {
  return [await decodeRow(), await tinyStepRow()];
}

/** Runs one train-step configuration in a child process and reads its JSON row. */
function trainChild(shape: string, flags: string[]): Promise<Record<string, number | string>> {
  return benchChild("./train-step.js", process.execPath, [shape, ...flags]);
}

/** Runs a benchmark child (a compiled bench script, or bench/peer's Python) and parses its JSON line; a killed child (out of memory) is a row saying so. */
async function benchChild(file: string, command: string, args: string[]): Promise<Record<string, number | string>> {
  const { spawnSync } = await import("node:child_process");
  const { fileURLToPath } = await import("node:url");
  const out = spawnSync(command, [fileURLToPath(new URL(file, import.meta.url)), ...args], { encoding: "utf8", maxBuffer: 1 << 20, stdio: ["ignore", "pipe", "pipe"] });
  const line = out.stdout.trim().split("\n").at(-1) ?? "";
  if (out.status === 0 && line.startsWith("{")) return JSON.parse(line) as Record<string, number | string>;
  const why = out.signal === "SIGKILL" ? "killed: out of memory" : `failed (${out.signal ?? `exit ${out.status}`}): ${out.stderr.trim().split("\n").at(-1) ?? ""}`;
  return { name: `${file} ${args.join(" ")}: ${why}`, torch: "", seconds: Number.NaN, peakRssBytes: Number.NaN };
}

/**
 * The realistic-length SPIN step at bench-60m (bench/realistic.ts): packed and padded, fused and
 * eager attention, one process each; and transformers on the same pairs when BENCH_PEER_PYTHON
 * names a Python with transformers (bench/peer/spin_step.py), in this same run.
 */
export async function realisticRows(matmulGflops: number, shape = "bench-60m"): Promise<Row[]> {
  const configurations: Record<string, number | string>[] = [];
  // The padded batch with eager attention (the path before packing and the fused kernel) needs
  // more than this machine's 24 GiB at these lengths: it is run with the fused kernel only.
  for (const flags of [[], ["--eager"], ["--padded"]]) configurations.push(await benchChild("./spin-realistic.js", process.execPath, [shape, ...flags]));
  const python = process.env.BENCH_PEER_PYTHON;
  // The peer scripts sit beside the sources (dist/bench holds the compiled TypeScript).
  const peer = python ? await benchChild("../../bench/peer/spin_step.py", python, [await benchCheckpoint(shape)]) : null;
  const needed = Number(configurations[0]!.packedTokens);
  return [...configurations, ...(peer ? [peer] : [])].map((r) => ({
    name: `${String(r.name)} (torch ${String(r.torch)})`,
    "s/step": Number(r.seconds),
    "× peer speed": peer ? Number(peer.seconds) / Number(r.seconds) : Number.NaN,
    "needed tokens/s": needed / Number(r.seconds),
    "of peak (6·P·needed)": (6 * parameterCount(SHAPES[shape]!) * needed) / Number(r.seconds) / 1e9 / matmulGflops,
    "peak RSS GiB": Number(r.peakRssBytes) / 2 ** 30,
    "× peer RSS": peer ? Number(r.peakRssBytes) / Number(peer.peakRssBytes) : Number.NaN,
  }));
}

/**
 * Self-play generation on realistic prompt lengths at bench-60m (bench/generate-realistic.ts):
 * continuous batching and static batches of 16, and transformers `generate` in batches of 16
 * when BENCH_PEER_PYTHON is set (bench/peer/generate.py). BENCH_PROMPTS overrides the 512 prompts.
 */
export async function generateRealisticRows(shape = "bench-60m"): Promise<Row[]> {
  const prompts = `--prompts=${process.env.BENCH_PROMPTS ?? 512}`;
  const configurations: Record<string, number | string>[] = [];
  for (const flags of [[], ["--static"]]) configurations.push(await benchChild("./generate-realistic.js", process.execPath, [shape, prompts, ...flags]));
  const python = process.env.BENCH_PEER_PYTHON;
  const peer = python ? await benchChild("../../bench/peer/generate.py", python, [await benchCheckpoint(shape), prompts]) : null;
  return [...configurations, ...(peer ? [peer] : [])].map((r) => ({
    name: `${String(r.name)} (torch ${String(r.torch)})`,
    prompts: Number(r.prompts),
    seconds: Number(r.seconds),
    "new tokens": Number(r.newTokens),
    "new tok/s": Number(r.newTokens) / Number(r.seconds),
    "× peer speed": peer ? Number(peer.seconds) / Number(r.seconds) : Number.NaN,
    "peak RSS GiB": Number(r.peakRssBytes) / 2 ** 30,
  }));
}

/** The SPIN train step on bench-tiny and bench-60m (with and without a live opponent). */
export async function trainRows(matmulGflops: number): Promise<Row[]> {
  const rows: Row[] = [];
  for (const [shape, flags] of [["bench-tiny", []], ["bench-60m", []], ["bench-60m", ["--live-opponent"]]] as [string, string[]][]) {
    const r = await trainChild(shape, flags);
    rows.push({
      name: String(r.name),
      "s/step": Number(r.seconds),
      "tokens/s": Number(r["tokens/s"]),
      "GFLOP/s (6·P·tok)": Number(r.gflops),
      "of peak": Number(r.gflops) / matmulGflops,
      "GFLOP/s incl. attn": Number(r.gflopsWithAttention),
      "peak RSS GiB": Number(r.peakRssBytes) / 2 ** 30,
      "min GiB (w+g+opt)": Number(r.minimumBytes) / 2 ** 30,
    });
  }
  return rows;
}

/** One SPIN step with gradient checkpointing for every benchmark shape, bench-1b included. */
export async function scalingRows(): Promise<Row[]> {
  const rows: Row[] = [];
  for (const shape of ["bench-tiny", "bench-60m", "bench-250m", "bench-1b"]) {
    const r = await trainChild(shape, ["--checkpoint"]);
    rows.push({
      name: shape,
      params: Number(r.params),
      "s/step": Number(r.seconds),
      "tokens/s": Number(r["tokens/s"]),
      "GFLOP/s (6·P·tok)": Number(r.gflops),
      "peak RSS GiB": Number(r.peakRssBytes) / 2 ** 30,
      "min GiB (w+g+opt)": Number(r.minimumBytes) / 2 ** 30,
    });
  }
  return rows;
}

/**
 * LoRA against full fine-tuning of the same shape (SPIN steps, one process each): a float32 and
 * a bfloat16 base with an r=16 adapter on every linear module, with gradient checkpointing and
 * without. A LoRA row is compared with full fine-tuning under the same checkpointing, or with
 * checkpointed full fine-tuning where that without checkpointing would not fit in memory
 * (about 24 bytes per parameter: weights, gradients, RMSprop state and the activations).
 */
export async function loraRows(shapes: string[] = ["bench-250m", "bench-1b"]): Promise<Row[]> {
  const { totalmem } = await import("node:os");
  const rows: Row[] = [];
  for (const shape of shapes) {
    const checkpointedFull = await trainChild(shape, ["--checkpoint"]);
    const fullFits = 24 * Number(checkpointedFull.params) < totalmem();
    for (const checkpoint of [true, false]) {
      const mode = checkpoint ? ["--checkpoint"] : [];
      const full = checkpoint ? checkpointedFull : fullFits ? await trainChild(shape, mode) : null;
      const measured = full ? [full] : [];
      for (const flags of [["--lora=16"], ["--lora=16", "--dtype=bfloat16"]]) measured.push(await trainChild(shape, [...mode, ...flags]));
      const against = full ?? checkpointedFull;
      for (const r of measured) {
        rows.push({
          name: String(r.name),
          "s/step": Number(r.seconds),
          "× full step": Number(r.seconds) / Number(against.seconds),
          "peak RSS GiB": Number(r.peakRssBytes) / 2 ** 30,
          "× full RSS": Number(r.peakRssBytes) / Number(against.peakRssBytes),
          against: String(against.name),
          "min GiB (w+g+opt)": Number(r.minimumBytes) / 2 ** 30,
        });
      }
    }
  }
  return rows;
}

/**
 * ZeRO stages 0–3 on 2 local ranks (Gloo loopback, 1 thread each): per-rank peak RSS and
 * step time of checkpointed SPIN steps, beside the analytic per-rank state. One launch per
 * stage, so each peak is its own.
 */
export async function zeroRows(runs: [shape: string, stages: number[], repeats: number][]): Promise<Row[]> {
  const { launch } = await import("../lib/distributed/launch.js");
  const { fileURLToPath } = await import("node:url");
  const rows: Row[] = [];
  for (const [shape, stages, repeats] of runs) {
    await benchCheckpoint(shape);
    let stageZero: { seconds: number; peak: number } | null = null;
    for (const stage of stages) {
      const lines: string[] = [];
      const result = await launch({
        nprocPerNode: 2,
        masterPort: 29500 + Math.floor(Math.random() * 1000),
        command: [process.execPath, fileURLToPath(new URL("./zero-worker.js", import.meta.url)), shape, String(stage), String(repeats)],
        onLine: (line) => lines.push(line),
      });
      const json = lines.map((l) => l.replace(/^\[rank \d+\] /, "")).find((l) => l.startsWith("{"));
      if (result.exitCode !== 0 || !json) throw new Error(`ZeRO benchmark (${shape}, stage ${stage}) failed:\n${lines.join("\n")}`);
      const r = JSON.parse(json) as { seconds: number; peakRssBytes: number[]; stateBytes: number[]; analyticBytes: number; threads: number };
      const peak = Math.max(...r.peakRssBytes);
      if (stage === 0) stageZero = { seconds: r.seconds, peak };
      rows.push({
        name: `${shape} ZeRO stage ${stage}, 2 ranks × ${r.threads} thread`,
        "s/step": r.seconds,
        "× stage 0 step": stageZero ? r.seconds / stageZero.seconds : "-",
        "peak RSS GiB (max rank)": peak / 2 ** 30,
        "× stage 0 RSS": stageZero ? peak / stageZero.peak : "-",
        "optimizer state GiB (rank 0)": r.stateBytes[0]! / 2 ** 30,
        "analytic w+g+opt GiB": r.analyticBytes / 2 ** 30,
      });
    }
  }
  return rows;
}

/**
 * Generation (docs/benchmarks.md, Workloads): 64-token prompts, exactly 128 new tokens, greedy
 * b=1 and b=32, sampling b=32; with BENCH_PEER_PYTHON, transformers `generate` on the same
 * prompts (bench/peer/decode.py) in this same run.
 */
export async function generateRows(limits: { matmulGflops: number; bandwidthGBs: number }): Promise<Row[]> {
  const python = process.env.BENCH_PEER_PYTHON;
  const rows: Row[] = [];
  for (const name of ["bench-tiny", "bench-60m"]) {
    const shape = SHAPES[name]!;
    const model = await CausalLM.load(await benchCheckpoint(name));
    const params = parameterCount(shape);
    const cases: [string, number, { doSample: boolean; topP?: number }][] = [
      ["greedy b=1", 1, { doSample: false }],
      ["greedy b=32", 32, { doSample: false }],
      ["sample T=1 top-p 0.9 b=32", 32, { doSample: true, topP: 0.9 }],
    ];
    for (const [label, batch, sampling] of cases) {
      const prompts = Array.from({ length: batch }, (_, r) => Array.from({ length: 64 }, (_, i) => ((r * 131 + i * 17) % (shape.vocab - 3)) + 3));
      const run = () => model.generate(prompts, { maxNewTokens: 128, eosTokenIds: [], temperature: 1, topK: 0, ...sampling });
      await run(); // warm-up
      const result = await run();
      const perToken = result.decodeSeconds / 127; // 127 decode steps after the prefill's token
      const tokensPerSecond = (batch * 127) / result.decodeSeconds;
      const peerArgs = [await benchCheckpoint(name), `--batch=${batch}`, ...(sampling.doSample ? ["--sample"] : [])];
      const peer = python ? await benchChild("../../bench/peer/decode.py", python, peerArgs) : null;
      const row: Row = {
        name: `${name} ${label}`,
        "new tok/s": tokensPerSecond,
        "ms/step": perToken * 1000,
        "peer ms/step": peer ? Number(peer.msPerStep) : Number.NaN,
        "× peer speed": peer ? Number(peer.msPerStep) / (perToken * 1000) : Number.NaN,
        "sampling share": result.samplingSeconds / result.decodeSeconds,
        "prefill s": result.prefillSeconds,
      };
      if (batch === 1) {
        // Bytes a token must read: every weight but the input embedding table (one row of it),
        // and the keys and values of its row at the mean cached length of the run.
        const headDim = shape.hidden / shape.heads;
        const kvBytes = shape.layers * 2 * shape.kvHeads * headDim * (64 + 64) * 4;
        const bound = ((params - shape.vocab * shape.hidden) * 4 + kvBytes) / (limits.bandwidthGBs * 1e9);
        row["bound ms/tok"] = bound * 1000;
        row["of bandwidth bound"] = bound / perToken;
      } else {
        const bound = (2 * params * batch) / (limits.matmulGflops * 1e9);
        row["bound ms/step"] = bound * 1000;
        row["of matmul bound"] = bound / perToken;
      }
      rows.push(row);
    }
    model.dispose();
  }
  return rows;
}

/** Gradient all-reduce of bench-60m on 2 local ranks, after and overlapped with backward, as a share of the step time. */
export async function allReduceRows(): Promise<Row[]> {
  const { launch } = await import("../lib/distributed/launch.js");
  const { fileURLToPath } = await import("node:url");
  await benchCheckpoint("bench-60m");
  const lines: string[] = [];
  const result = await launch({
    nprocPerNode: 2,
    masterPort: 29500 + Math.floor(Math.random() * 1000),
    command: [process.execPath, fileURLToPath(new URL("./allreduce-worker.js", import.meta.url))],
    onLine: (line) => lines.push(line),
  });
  const json = lines.map((l) => l.replace(/^\[rank \d+\] /, "")).find((l) => l.startsWith("{"));
  if (result.exitCode !== 0 || !json) throw new Error(`all-reduce benchmark failed:\n${lines.join("\n")}`);
  const r = JSON.parse(json) as {
    threads: number;
    gradientBytes: number;
    results: { mode: string; backwardSeconds: number; waitSeconds: number; overlapped: number; buckets: number }[];
  };
  return r.results.map((t) => ({
    name: `bench-60m SPIN step, 2 local ranks × ${r.threads} thread(s), Gloo loopback: ${t.mode}`,
    "grad MiB": r.gradientBytes / 2 ** 20,
    "slowest rank's forward+backward s": t.backwardSeconds,
    // The communication not hidden behind backward.
    "exposed all-reduce s": t.waitSeconds,
    "share of step": t.waitSeconds / (t.backwardSeconds + t.waitSeconds),
    "buckets overlapped": t.buckets ? `${t.overlapped}/${t.buckets}` : "-",
  }));
}
