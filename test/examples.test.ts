// The runnable examples under examples/, run as their header comments say (compiled, in child
// processes): spin-on-checkpoint on a tiny checkpoint + a tiny jsonl dataset, and the training
// service on 127.0.0.1 with a free port (a SPIN run streamed as Server-Sent Events and aborted,
// an SFT run to its end, errors, shutdown). demo-api takes minutes, so it is type-checked,
// imported (which runs nothing) and asked for its usage.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";

import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";

import { readSpinRows } from "../lib/index.js";
import { CLI, type Exit, REPO, ensureDist, maxRelativeDifference, sftRows, spawnNode, writeTinyCheckpoint } from "./cli-helpers.js";
import { removeRoot, tempRoot } from "./fixtures.js";
import { pairOf } from "./tiny-tokenizer.js";

const root = tempRoot("examples");
const base = path.join(root, "base");
const data = path.join(root, "sft.jsonl");
const example = (name: string) => path.join(REPO, "dist", "examples", `${name}.js`);
const show = (exit: Exit) => `exit ${exit.code} (${exit.signal})\nstdout:\n${exit.stdout}\nstderr:\n${exit.stderr}`;

beforeAll(async () => {
  ensureDist();
  await writeTinyCheckpoint(base);
  // {messages} rows (UltraChat style): the example converts any accepted shape.
  writeFileSync(data, sftRows(8).map((r) => JSON.stringify({ messages: r.real })).join("\n") + "\n");
}, 120_000);
afterAll(() => removeRoot(root));

describe("examples/demo-api.ts", () => {
  test("the examples type-check (strict, as the package's tsconfig.json)", () => {
    const config = path.join(root, "tsconfig.examples.json");
    const files = ["demo-api", "spin-on-checkpoint", "training-service"].map((name) => path.join(REPO, "examples", `${name}.ts`));
    writeFileSync(config, JSON.stringify({ extends: path.join(REPO, "tsconfig.json"), compilerOptions: { noEmit: true, typeRoots: [path.join(REPO, "node_modules", "@types")] }, include: [], files }));
    try {
      execFileSync(path.join(REPO, "node_modules", ".bin", "tsc"), ["-p", config], { cwd: REPO, stdio: "pipe" });
    } catch (error) {
      const e = error as { stdout?: Buffer; stderr?: Buffer };
      expect.fail(`tsc found errors in the examples:\n${e.stdout?.toString() ?? ""}${e.stderr?.toString() ?? ""}`);
    }
  });

  test("imports without running and exports main; checks its arguments; the compiled script prints its usage", async () => {
    const { main } = await import("../examples/demo-api.js");
    expect(typeof main).toBe("function");
    const errors: string[] = [];
    const spy = vi.spyOn(console, "error").mockImplementation((line: string) => void errors.push(line));
    try {
      expect(await main([path.join(root, "demo"), "zero"])).toBe(2);
      expect(await main(["--iterations=2"])).toBe(2);
    } finally {
      spy.mockRestore();
    }
    expect(errors[0]).toContain("iterations must be an integer >= 1, got 'zero'");
    expect(errors[1]).toContain("unexpected arguments --iterations=2");
    expect(existsSync(path.join(root, "demo")), "nothing was run").toBe(false);
    const help = await spawnNode(example("demo-api"), ["--help"]).exit;
    expect(help.code, show(help)).toBe(0);
    expect(help.stdout).toMatch(/^usage: node dist\/examples\/demo-api\.js \[run-folder\] \[iterations\]/);
  });
});

describe("examples/spin-on-checkpoint.ts", () => {
  const out = path.join(root, "spin-out");
  const settings = ["--max-new-tokens=4", "--gen-batch-size=8", "--batch-size=4", "--lr=1e-3", "--beta=0.5", "--max-length=64", "--max-prompt-length=48", "--threads=1"];

  test("1 iteration on a tiny checkpoint + jsonl dataset: generated rows, training, θ1 saved", async () => {
    const exit = await spawnNode(example("spin-on-checkpoint"), [base, data, out, "--iterations=1", ...settings]).exit;
    expect(exit.code, show(exit)).toBe(0);
    expect(exit.stdout).toContain("8 prompts from");
    expect(exit.stdout).toContain("iteration 0: 8 rows");
    expect(exit.stdout).toContain("iteration 0: 2 updates on 8 pairs");
    expect(exit.stdout.trimEnd().split("\n").at(-1)).toBe(`done: ${path.join(out, "iter0", "model")}`);
    const rows = await readSpinRows(path.join(out, "iter0", "data"), "train");
    expect(rows).toHaveLength(8);
    expect(readdirSync(path.join(out, "iter0", "model"))).toEqual(expect.arrayContaining(["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]));
    expect(readFileSync(path.join(out, "iter0", "model", "model.safetensors")).equals(readFileSync(path.join(base, "model.safetensors")))).toBe(false);
    expect(readFileSync(path.join(out, "iter0", "train", "metrics.jsonl"), "utf8").trimEnd().split("\n")).toHaveLength(2);
  });

  test("the same command with --iterations=2 continues from θ1: iteration 1 trains on its rows + iteration 0's", async () => {
    const exit = await spawnNode(example("spin-on-checkpoint"), [base, data, out, "--iterations=2", ...settings]).exit;
    expect(exit.code, show(exit)).toBe(0);
    expect(exit.stdout).toContain(`iteration 0: done before, loading θ1 from ${path.join(out, "iter0", "model")}`);
    expect(exit.stdout).toContain("iteration 1: 4 updates on 16 pairs");
    expect(existsSync(path.join(out, "iter1", "model", "model.safetensors"))).toBe(true);
  });

  test("under spin-native launch on 2 ranks with half the batch: the same rows and θ1 as 1 rank", async () => {
    const twoRanks = path.join(root, "spin-out-2");
    const exit = await spawnNode(CLI, [
      "launch",
      "--nproc-per-node=2",
      `--master-port=${20000 + Math.floor(Math.random() * 30000)}`,
      "--",
      process.execPath,
      example("spin-on-checkpoint"),
      base,
      data,
      twoRanks,
      "--iterations=1",
      ...settings.map((s) => (s === "--batch-size=4" ? "--batch-size=2" : s)),
    ]).exit;
    expect(exit.code, show(exit)).toBe(0);
    // Rank 0 reports; rank 1 works silently.
    expect(exit.stdout).toContain("[rank 0] iteration 0: 2 updates on 8 pairs");
    expect(exit.stdout).not.toContain("[rank 1] iteration");
    expect(await readSpinRows(path.join(twoRanks, "iter0", "data"), "train")).toEqual(await readSpinRows(path.join(out, "iter0", "data"), "train"));
    const model = (dir: string) => path.join(dir, "iter0", "model", "model.safetensors");
    expect(await maxRelativeDifference(model(twoRanks), model(out))).toBeLessThan(1e-4);
  });

  test("argument checking: usage on missing arguments, bad options, a folder that is not a checkpoint", async () => {
    const { parseArguments } = await import("../examples/spin-on-checkpoint.js");
    const cases: [string[], string][] = [
      [[], "expected <model-dir> <data> <out-dir>, got 0 argument(s)"],
      [[base, data], "got 2 argument(s)"],
      [[base, data, out, "--lr=fast"], "--lr must be a number >= 0, got 'fast'"],
      [[base, data, out, "--iterations=1.5"], "--iterations must be an integer >= 1, got '1.5'"],
      [[base, data, out, "--learning-rate=1"], "unknown option --learning-rate"],
      [[base, data, out, "--iterations"], "'--iterations' is not of the form --key=value"],
      [[root, data, out], "is not a checkpoint folder: it has no config.json"],
      [[base, path.join(root, "missing.jsonl"), out], "missing.jsonl does not exist"],
      [[base, data, data], "is not a folder"],
    ];
    for (const [args, message] of cases) expect(() => parseArguments(args), args.join(" ")).toThrow(message);
    expect(parseArguments([base, data, out, "--iterations=3", "--lr=1e-6", "--device=cpu"]).options).toMatchObject({ iterations: 3, lr: 1e-6, device: "cpu", beta: 0.1 });
    // The compiled script: usage errors exit 2 with the usage on stderr; --help exits 0.
    const [none, help] = await Promise.all([spawnNode(example("spin-on-checkpoint"), []).exit, spawnNode(example("spin-on-checkpoint"), ["--help"]).exit]);
    expect(none.code, show(none)).toBe(2);
    expect(none.stderr).toContain("expected <model-dir> <data> <out-dir>, got 0 argument(s)");
    expect(none.stderr).toContain("usage: node dist/examples/spin-on-checkpoint.js <model-dir> <data> <out-dir>");
    expect(help.code, show(help)).toBe(0);
    expect(help.stdout).toContain("--iterations=N");
  });
});

/** Server-Sent Events read from a fetch body. */
class EventReader {
  readonly events: { event: string; data: Record<string, unknown> }[] = [];
  ended = false;
  #waiters: (() => void)[] = [];

  constructor(body: ReadableStream<Uint8Array>) {
    void this.#pump(body);
  }

  async #pump(body: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let buffer = "";
    const reader = body.getReader();
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let at: number;
      while ((at = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, at);
        buffer = buffer.slice(at + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event !== undefined && data !== undefined) this.events.push({ event, data: JSON.parse(data) as Record<string, unknown> });
      }
      this.#wake();
    }
    this.ended = true;
    this.#wake();
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Resolves with the first event (from the start) that matches; rejects after `ms`. */
  async waitFor(match: (e: { event: string; data: Record<string, unknown> }) => boolean, what: string, ms = 30_000): Promise<{ event: string; data: Record<string, unknown> }> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.events.find(match);
      if (found) return found;
      if (this.ended) throw new Error(`the event stream ended before ${what}; events: ${this.events.map((e) => e.event).join(", ")}`);
      if (Date.now() > deadline) throw new Error(`no ${what} within ${ms} ms; events: ${this.events.map((e) => e.event).join(", ")}`);
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 200);
      });
    }
  }
}

describe("examples/training-service.ts", () => {
  test("POST /train → SSE events → POST /abort; an SFT run to its end; errors; SIGTERM shuts down", async () => {
    let url = "";
    let service!: ReturnType<typeof spawnNode>;
    const listening = new Promise<void>((resolve) => {
      service = spawnNode(example("training-service"), ["--port=0", "--host=127.0.0.1", "--threads=1"], (line) => {
        const match = /^listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(line);
        if (match) {
          url = match[1]!;
          resolve();
        }
      });
    });
    await Promise.race([listening, service!.exit.then((exit) => Promise.reject(new Error(`the service exited: ${show(exit)}`)))]);
    try {
      const post = (route: string, body?: unknown) =>
        fetch(url + route, { method: "POST", headers: { "content-type": "application/json" }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });

      const stream = await fetch(url + "/events");
      expect(stream.status).toBe(200);
      expect(stream.headers.get("content-type")).toMatch(/^text\/event-stream/);
      const events = new EventReader(stream.body!);

      // 1. SPIN on inline rows, long enough to be aborted.
      const rows = ["cat", "dog", "owl", "bee", "fig", "jam", "oak", "sky"].map((w) => pairOf(`say ${w}`, [...w].reverse().join(""), w));
      const spinOut = path.join(root, "service-spin");
      const config = { learningRate: 1e-3, beta: 0.5, perDeviceTrainBatchSize: 2, numTrainEpochs: 100, loggingSteps: 1, saveStrategy: "no", maxLength: 64, maxPromptLength: 48 };
      const started = await post("/train", { kind: "spin", model: base, rows, outputDir: spinOut, config });
      expect(started.status).toBe(202);
      const { id } = (await started.json()) as { id: number };
      expect(id).toBe(1);
      const busy = await post("/train", { model: base, rows, outputDir: path.join(root, "other") });
      expect(busy.status).toBe(409);

      await events.waitFor((e) => e.event === "run" && e.data.status === "training", "the run event");
      const third = await events.waitFor((e) => e.event === "step" && (e.data.step as number) >= 3, "step 3");
      expect(third.data).toMatchObject({ run: 1, step: 3 });
      expect(Object.keys(third.data.metrics as object)).toEqual(expect.arrayContaining(["loss", "rewards/margins", "rewards/accuracies"]));
      expect(events.events.some((e) => e.event === "log")).toBe(true);

      const abort = await post("/abort");
      expect(abort.status).toBe(202);
      const done = await events.waitFor((e) => e.event === "done" && e.data.run === 1, "the done event of run 1");
      expect(done.data).toMatchObject({ aborted: true, model: null });
      expect(done.data.globalStep as number).toBeGreaterThanOrEqual(3);
      expect((done.data.globalStep as number) < 400, "aborted long before the planned 400 updates").toBe(true);
      const checkpoint = await events.waitFor((e) => e.event === "checkpoint" && e.data.run === 1, "the abort checkpoint");
      expect(checkpoint.data.step).toBe(done.data.globalStep);
      expect(existsSync(path.join(spinOut, `checkpoint-${String(done.data.globalStep)}`))).toBe(true);
      expect(((await (await fetch(url + "/status")).json()) as { run: { status: string } }).run.status).toBe("aborted");
      expect((await post("/abort")).status).toBe(409);

      // 2. SFT on a dataset path, 3 updates, to its end: the model is saved.
      const sftOut = path.join(root, "service-sft");
      const sft = await post("/train", { kind: "sft", model: base, data, outputDir: sftOut, config: { maxSteps: 3, perDeviceTrainBatchSize: 4, learningRate: 1e-3, saveStrategy: "no", maxLength: 64, maxPromptLength: 48 } });
      expect(sft.status).toBe(202);
      const sftDone = await events.waitFor((e) => e.event === "done" && e.data.run === 2, "the done event of run 2");
      expect(sftDone.data).toMatchObject({ aborted: false, globalStep: 3, model: path.join(sftOut, "model") });
      expect(existsSync(path.join(sftOut, "model", "model.safetensors"))).toBe(true);
      // A late subscriber gets the current run's events replayed.
      const late = new EventReader((await fetch(url + "/events")).body!);
      await late.waitFor((e) => e.event === "done" && e.data.run === 2, "the replayed done event");
      expect(late.events.filter((e) => e.event === "step").map((e) => e.data.step)).toEqual([1, 2, 3]);

      // 3. Errors: a bad body is 400; a run that fails reports an error event.
      const bad = await post("/train", { kind: "ppo", model: base, rows, outputDir: spinOut });
      expect(bad.status).toBe(400);
      expect(((await bad.json()) as { error: string }).error).toContain('kind must be "spin" or "sft"');
      expect((await post("/train", { model: base, outputDir: spinOut })).status).toBe(400);
      expect((await fetch(url + "/nowhere")).status).toBe(404);
      const failing = await post("/train", { model: base, rows, outputDir: path.join(root, "service-bad"), config: { learningRate: -1 } });
      expect(failing.status).toBe(202);
      const error = await events.waitFor((e) => e.event === "error" && e.data.run === 3, "the error event of run 3");
      expect(error.data).toMatchObject({ code: "INVALID_ARGUMENT" });
      expect(error.data.message).toMatch(/learningRate/);
    } finally {
      service.process.kill("SIGTERM");
    }
    const exit = await service.exit;
    expect(exit.code, show(exit)).toBe(0);
    expect(exit.stdout).toContain("SIGTERM: shutting down");
  });
});
