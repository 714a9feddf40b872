// The command line's exit codes: 0 finished, 130 interrupted (Ctrl-C: the run stops at a
// resumable point and says how to go on), 2 usage (the command line or config is wrong),
// 1 any other error (the data, the model, the file system).
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { CLI, type Exit, ensureDist, runCli, sftRows, spawnNode, writeTinyCheckpoint } from "./cli-helpers.js";
import { removeRoot, tempRoot } from "./fixtures.js";

const root = tempRoot("exit-codes");
const model = path.join(root, "model");
const data = path.join(root, "sft.jsonl");

beforeAll(async () => {
  ensureDist();
  await writeTinyCheckpoint(model);
  writeFileSync(data, sftRows(24).map((r) => JSON.stringify(r) + "\n").join(""));
}, 120_000);
afterAll(() => removeRoot(root));

const show = (exit: Exit) => `exit ${exit.code} (${exit.signal})\nstdout:\n${exit.stdout}\nstderr:\n${exit.stderr}`;

describe("errors", () => {
  test("usage errors exit 2; errors of the data or the run exit 1", async () => {
    const badRow = path.join(root, "bad-row.jsonl");
    writeFileSync(badRow, `${JSON.stringify({ prompt: "a", response: "b" })}\n${JSON.stringify({ question: "?" })}\n`);
    const badJson = path.join(root, "bad-json.jsonl");
    writeFileSync(badJson, '{"prompt": "a", "resp\n');
    // Each run its own output folder: they run at once, and a folder takes one writer.
    const common = (tag: string) => [`--model_name_or_path=${model}`, `--output_dir=${path.join(root, `errors-${tag}`)}`];
    const [unknownCommand, badValue, missingKey, rowError, jsonError, missingModel, demoSeed, demoIterations] = await Promise.all([
      runCli(["trian"]),
      runCli(["train", ...common("value"), `--input=${data}`, "--learning_rate=.inf"]),
      runCli(["train", `--input=${data}`]),
      runCli(["train", ...common("row"), `--input=${badRow}`]),
      runCli(["generate", ...common("json"), `--input=${badJson}`]),
      runCli(["train", `--model_name_or_path=${path.join(root, "no-model")}`, `--output_dir=${path.join(root, "errors-model")}`, `--input=${data}`]),
      runCli(["demo", `--out=${path.join(root, "demo-seed")}`, "--seed="]),
      runCli(["demo", `--out=${path.join(root, "demo-iterations")}`, "--iterations=0"]),
    ]);
    expect(unknownCommand.code, show(unknownCommand)).toBe(2);
    expect(badValue.code, show(badValue)).toBe(2);
    expect(badValue.stderr).toContain("'learning_rate' must be a finite number ≥ 0, got Infinity");
    expect(missingKey.code, show(missingKey)).toBe(2);
    expect(rowError.code, show(rowError)).toBe(1);
    expect(rowError.stderr).toContain(`${badRow} (line 2): row 1: the row fits none of`);
    expect(jsonError.code, show(jsonError)).toBe(1);
    expect(jsonError.stderr).toContain(`${badJson}: line 1 is not valid JSON`);
    expect(missingModel.code, show(missingModel)).toBe(1);
    expect(demoSeed.code, show(demoSeed)).toBe(2);
    expect(demoSeed.stderr).toContain("--seed takes an integer in [0, 2^32), got ''");
    expect(demoIterations.code, show(demoIterations)).toBe(2);
    expect(demoIterations.stderr).toContain("--iterations takes an integer in [1, 2^32), got '0'");
  });
});

describe("Ctrl-C", () => {
  test("`spin-native train` stops after the current update with a checkpoint: exit 130, and how to resume", async () => {
    const out = path.join(root, "train-run");
    const config = path.join(root, "train.yaml");
    // Far more updates than the test waits for: only an interrupt ends it.
    writeFileSync(
      config,
      [
        `model_name_or_path: ${model}`,
        `input: ${data}`,
        `output_dir: ${out}`,
        "threads: 1",
        "learning_rate: 1.0e-3",
        "per_device_train_batch_size: 2",
        "num_train_epochs: 1000",
        "max_length: 48",
        "max_prompt_length: 32",
        "logging_steps: 1",
        "save_strategy: 'no'",
      ].join("\n") + "\n",
    );
    let sent = false;
    const child = spawnNode(CLI, ["train", config], (line, process) => {
      if (!sent && /^\[step 2 /.test(line)) {
        sent = true;
        process.kill("SIGINT");
      }
    });
    const exit = await child.exit;
    expect(sent, show(exit)).toBe(true);
    expect(exit.code, show(exit)).toBe(130);
    expect(exit.stderr).toMatch(/spin-native: interrupted: stopped after update \d+, checkpoint saved in .*; re-run the same command to resume\n/);
    const checkpoints = readdirSync(out).filter((name) => /^checkpoint-\d+$/.test(name));
    expect(checkpoints.length, readdirSync(out).join(", ")).toBe(1);
    expect(existsSync(path.join(out, "model")), "an interrupted run saves no final model").toBe(false);
  });

  test("`spin-native generate` stops after a batch, the rows written so far kept: exit 130; a re-run resumes and finishes (exit 0)", async () => {
    const out = path.join(root, "generate-run");
    const many = path.join(root, "many.jsonl");
    writeFileSync(many, sftRows(200).map((r) => JSON.stringify(r) + "\n").join(""));
    const args = ["generate", `--model_name_or_path=${model}`, `--input=${many}`, `--output_dir=${out}`, "--batch_size=4", "--max_new_tokens=8", "--threads=1"];
    const child = spawnNode(CLI, args);
    let sent = false;
    // Progress lines go to stderr: interrupt once the first tenth is done.
    child.process.stderr!.on("data", (chunk: Buffer) => {
      if (!sent && /generate: [1-9]\d*\/200/.test(chunk.toString())) {
        sent = true;
        child.process.kill("SIGINT");
      }
    });
    const exit = await child.exit;
    expect(sent, show(exit)).toBe(true);
    expect(exit.code, show(exit)).toBe(130);
    expect(exit.stderr).toContain(`spin-native: interrupted: generation stopped, the rows written so far are kept in ${out}; re-run the same command to resume\n`);
    const written = readFileSync(path.join(out, "train", "train-0.jsonl"), "utf8").split("\n").length - 1;
    expect(written).toBeGreaterThan(0);
    expect(written).toBeLessThan(200);

    const again = await runCli(args);
    expect(again.code, show(again)).toBe(0);
    expect(readFileSync(path.join(out, "train", "train-0.jsonl"), "utf8").split("\n").length - 1).toBe(200);
  });
});
