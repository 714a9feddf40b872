// A worker of the distributed tests, started by `spin-native launch` (or directly for one
// rank): `node test/dist-worker.mjs <mode> <dir>`; imports the compiled library (dist/).
import { writeFileSync } from "node:fs";
import path from "node:path";

const lib = await import(new URL("../dist/lib/index.js", import.meta.url).href);
const [mode, dir] = process.argv.slice(2);
lib.setNumThreads(1);
// The group's timeout: 8 s, or DIST_TIMEOUT_MS. Small buckets for the reducer tests: many
// buckets, most of them started during backward.
// SPIN_TEST_SHARDING: the ZeRO stage (small buckets too, so that parameters straddle shards).
const sharding = Number(process.env.SPIN_TEST_SHARDING ?? 0);
const smallBuckets = mode === "reduce" || mode === "nccl" || mode === "zero" || sharding > 0;
const options = { timeoutMs: Number(process.env.DIST_TIMEOUT_MS ?? 8000), bucketBytes: smallBuckets ? 4096 : undefined, overlapGradients: process.env.OVERLAP !== "0", sharding };
// "nccl": a group of one on the GPU (scripts/gpu-check.sh), port in argv[4].
const dist =
  mode === "nccl"
    ? await lib.Distributed.init({ rank: 0, worldSize: 1, masterAddr: "127.0.0.1", masterPort: Number(process.argv[4]), ...options })
    : await lib.Distributed.fromEnv(process.env, options);
const rank = dist?.rank ?? 0;
const out = (name, value) => writeFileSync(path.join(dir, `${name}-rank${rank}.json`), JSON.stringify(value));

if (mode === "collectives") {
  const t = lib.tensor([rank + 1, 10 * (rank + 1)], { dtype: "float64" });
  await dist.allReduce(t, "sum");
  const sum = Array.from(t.toTypedArray());
  const a = lib.tensor([rank + 1], { dtype: "float64" });
  await dist.allReduce(a, "avg");
  const m = lib.tensor([rank * 7 % 5], { dtype: "float64" });
  await dist.allReduce(m, "max");
  const b = lib.tensor([rank === 1 ? 42 : -1, rank], { dtype: "float64" });
  await dist.broadcast(b, 1);
  const gathered = (await dist.allGather(lib.tensor([rank, rank * rank], { dtype: "float64" }))).map((g) => Array.from(g.toTypedArray()));
  await dist.barrier();
  out("collectives", { sum, avg: a.item(), max: m.item(), broadcast: Array.from(b.toTypedArray()), gathered });
} else if (mode === "train") {
  const batch = Number(process.argv[4]);
  const accumulation = Number(process.argv[5] ?? 1);
  const count = Number(process.argv[6] ?? 8);
  // Resume runs: {tag, maxSteps}; checkpoints after every update, a constant learning rate.
  const resume = process.argv[7] ? JSON.parse(process.argv[7]) : null;
  const model = await lib.CausalLM.load(path.join(dir, "model"), { dtype: "float64" });
  // SPIN_TEST_LORA: train an adapter (no dropout: the ranks' draws would differ from one rank's).
  if (process.env.SPIN_TEST_LORA) model.addAdapter({ r: 2, alpha: 4, dropout: 0, targetModules: "all-linear", seed: 5 });
  const tokenizer = await lib.Tokenizer.fromDir(path.join(dir, "model"));
  const words = ["ab", "cd", "ef", "gh", "ij", "kl", "mn", "op"];
  const rows = words.slice(0, count).map((w, i) => ({
    real: [{ role: "user", content: w }, { role: "assistant", content: words[(i + 1) % 8] }],
    generated: [{ role: "user", content: w }, { role: "assistant", content: words[(i + 3) % 8] + "z" }],
  }));
  const trainer = new lib.SpinTrainer({
    model, tokenizer, distributed: dist,
    config: {
      outputDir: path.join(dir, `run-${resume?.tag ?? process.env.WORLD_SIZE ?? 1}`),
      perDeviceTrainBatchSize: batch, gradientAccumulationSteps: accumulation, maxSteps: resume?.maxSteps ?? 4,
      learningRate: 1e-3, optim: "adamw", beta: 0.5, warmupRatio: 0, gradientCheckpointing: sharding === 3 && !process.env.SPIN_TEST_NO_CHECKPOINT,
      ...(resume ? { saveStrategy: "steps", saveSteps: 1, lrSchedulerType: "constant" } : { saveStrategy: "no" }),
    },
  });
  const logs = [];
  trainer.on("step", (s) => {
    logs.push(s.metrics.loss);
    console.log(`step ${s.step}`);
  });
  // Ctrl-C (this rank alone, or all through the launcher) stops after an update.
  const abort = new AbortController();
  process.once("SIGINT", () => abort.abort());
  console.log(`pid ${process.pid}`);
  let result;
  try {
    result = await trainer.train(rows, resume ? { resumeFrom: "latest", signal: abort.signal } : {});
  } catch (error) {
    out("train-error", { message: error.message, code: error.code });
    process.exit(3);
  }
  const params = {};
  for (const [name, p] of model.parameters()) params[name] = Array.from(p.toTypedArray());
  for (const [name, t] of Object.entries(model.adapterTensors() ?? {})) params[name] = Array.from(t.toTypedArray());
  out(resume ? `train-${resume.tag}` : "train", { params, losses: logs, aborted: result.aborted, globalStep: result.globalStep });
} else if (mode === "reduce" || mode === "nccl") {
  // Each rank's own gradients (its rows, two micro-batches accumulated, layers checkpointed),
  // kept before the reduction so the test can average them independently.
  const device = mode === "nccl" ? (process.env.SPIN_TEST_DEVICE ?? "cuda:0") : "cpu";
  const variant = mode === "nccl" ? "llama" : process.argv[4];
  const model = await lib.CausalLM.load(path.join(dir, variant), { dtype: mode === "nccl" ? "float32" : "float64", device });
  for (const p of model.parameters().values()) p.requireGrad().dispose();
  const reducer = dist.gradientReducer(model);
  const backward = (k) => {
    const ids = lib.tensor([[3 + rank, 5 + k, 7, 11 + rank, 2 + k]], { dtype: "int64" }).to(device);
    const mask = lib.ones([1, 5], { dtype: "int64" }).to(device);
    const logits = model.forward(ids, mask, { checkpoint: true });
    const loss = logits.pow(2).mean().mul(1 + rank);
    loss.backward();
    for (const t of [ids, mask, logits, loss]) t.dispose();
  };
  const grads = () => Object.fromEntries([...model.parameters()].map(([name, p]) => [name, Array.from(p.grad.to("cpu").toTypedArray())]));
  backward(0);
  reducer.beforeBackward(true);
  backward(1);
  const local = grads();
  const stats = await reducer.finish();
  const reduced = grads();
  // Two backward passes under one arm: the second's gradients would miss the reduction.
  let twice = null;
  reducer.beforeBackward(true);
  backward(0);
  backward(1);
  await reducer.finish().catch((error) => (twice = error.message));
  // After that failure, an unarmed round on fresh gradients reduces correctly.
  for (const p of model.parameters().values()) p.zeroGrad();
  backward(0);
  const localAfter = grads();
  await reducer.finish();
  const reducedAfter = grads();
  reducer.dispose();
  const result = { local, reduced, stats, twice, localAfter, reducedAfter };
  if (mode === "nccl") {
    // A CUDA tensor goes through NCCL; a CPU one through Gloo, or the GPU when the build has no Gloo.
    for (const where of [device, "cpu"]) {
      const t = lib.tensor([1.5, -2], { dtype: "float32" }).to(where);
      await dist.allReduce(t, "avg");
      await dist.broadcast(t, 0);
      const gathered = await dist.allGather(t);
      result[where] = { reduced: Array.from(t.to("cpu").toTypedArray()), gathered: gathered.map((g) => Array.from(g.to("cpu").toTypedArray())) };
    }
  }
  out(mode, result);
} else if (mode === "zero") {
  // The optimizer and reducer as the trainer drives them, at the stage of SPIN_TEST_SHARDING:
  // AdamW with weight decay, two micro-batches per update, clipping that bites, and a third
  // update whose loss is NaN on the last rank (skipped everywhere).
  const variant = process.argv[4];
  const model = await lib.CausalLM.load(path.join(dir, variant), { dtype: "float64" });
  const optimizer = new lib.Optimizer(model, { kind: "adamw", weightDecay: 0.1 }, dist);
  const reducer = dist.gradientReducer(model, optimizer);
  const world = dist.worldSize;
  const updates = [];
  // Stage 3: the layers are gathered per use; whole-model calls wait for gatherParameters.
  let refused = null;
  if (sharding === 3) {
    optimizer.shardParameters();
    try {
      model.parameters();
    } catch (error) {
      refused = error.message;
    }
  }
  for (let update = 0; update < 4; update++) {
    for (let k = 0; k < 2; k++) {
      const last = k === 1;
      reducer.beforeBackward(last);
      const ids = lib.tensor([[3 + rank, 5 + k, 7 + update, 11 + rank, 2 + k]], { dtype: "int64" });
      const mask = lib.ones([1, 5], { dtype: "int64" });
      const logits = model.forward(ids, mask, { checkpoint: true });
      const poison = update === 2 && rank === world - 1 ? Number.NaN : 1;
      const loss = logits.pow(2).mean().mul((1 + rank) * poison);
      loss.backward();
      for (const t of [ids, mask, logits, loss]) t.dispose();
      await reducer.afterBackward(last);
    }
    const { gradNorm, applied } = await optimizer.step(1e-2, 0.05);
    if (sharding === 3) await optimizer.gatherParameters();
    const params = {};
    for (const [name, p] of model.parameters()) params[name] = Array.from(p.toTypedArray());
    if (sharding === 3) optimizer.shardParameters();
    updates.push({ gradNorm, applied, params });
  }
  if (sharding === 3) await optimizer.gatherParameters();
  const state = optimizer.state();
  const stateNumel = Object.values(state).reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
  for (const t of Object.values(state)) t.dispose();
  reducer.dispose();
  optimizer.dispose();
  out(`zero-${sharding}`, { updates, stateNumel, refused });
} else if (mode === "generate") {
  const model = await lib.CausalLM.load(path.join(dir, "model"));
  const tokenizer = await lib.Tokenizer.fromDir(path.join(dir, "model"));
  const prompts = ["ab", "cd", "ef", "gh", "ij", "kl", "mn"].map((w) => ({ messages: [{ role: "user", content: w }, { role: "assistant", content: "x" }] }));
  const outDir = path.join(dir, `gen-${process.env.WORLD_SIZE ?? 1}`);
  const result = await lib.generateDataParallel(
    { model, tokenizer, options: { batchSize: 2, maxNewTokens: 8, doSample: true, seed: 3, eosTokenIds: [1] } },
    prompts, outDir, dist,
  );
  out("generate", result);
} else if (mode === "die" || mode === "hang") {
  if (rank === 1 && mode === "die") process.kill(process.pid, "SIGKILL"); // a real kill: no clean-up, no goodbye
  if (rank === 1 && mode === "hang") await new Promise(() => setInterval(() => {}, 1000)); // alive, never joins
  const t = lib.tensor([1]);
  try {
    await dist.allReduce(t, "sum");
    out(mode, { error: null });
  } catch (error) {
    out(mode, { error: error.message, code: error.code });
    process.exit(4);
  }
} else {
  throw new Error(`dist-worker: unknown mode ${mode}`);
}
dist?.destroy();
