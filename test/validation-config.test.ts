// Run config values (lib/run/config.ts) are checked when the config is read, before any work:
// a value of the wrong type (a quoted number is a string), non-finite, out of range or not an
// integer where one is needed is refused, naming the key and where it was set (the YAML file,
// the command line, an iteration_schedule entry). `--key=value` overrides are converted to the
// key's type, as the command line has only strings.
import { writeFileSync } from "node:fs";
import path from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { SpinNativeError } from "../lib/index.js";
import { iterationSchedule, loadRunConfig, trainingFields } from "../lib/run/config.js";
import { type Exit, ensureDist, runCli } from "./cli-helpers.js";
import { removeRoot, tempRoot } from "./fixtures.js";

const root = tempRoot("validation-config");
let serial = 0;

beforeAll(() => ensureDist(), 120_000);
afterAll(() => removeRoot(root));

/** A config file holding `text`. */
function yaml(text: string): string {
  const file = path.join(root, `config-${serial++}.yaml`);
  writeFileSync(file, text);
  return file;
}

/** The error `loadRunConfig` rejects with (fails the test when it resolves). */
async function refusal(file: string | null, overrides: string[] = []): Promise<SpinNativeError> {
  let config: unknown;
  try {
    config = await loadRunConfig(file, overrides);
  } catch (error) {
    expect(error).toBeInstanceOf(SpinNativeError);
    expect((error as SpinNativeError).code).toBe("INVALID_ARGUMENT");
    return error as SpinNativeError;
  }
  throw new Error(`accepted: ${JSON.stringify(config)}`);
}

const show = (exit: Exit) => `exit ${exit.code} (${exit.signal})\nstdout:\n${exit.stdout}\nstderr:\n${exit.stderr}`;

describe("YAML values of the wrong type or an impossible value are refused, naming the key", () => {
  const cases: [string, string][] = [
    // a string where a number is meant, even one that parses
    ['learning_rate: "abc"', `'learning_rate' must be a finite number ≥ 0, got "abc"`],
    ['beta: "0.1"', `'beta' must be a finite number > 0, got "0.1"`],
    ['batch_size: "16"', `'batch_size' must be an integer ≥ 1, got "16"`],
    // not an integer, out of range
    ["per_device_train_batch_size: 2.5", "'per_device_train_batch_size' must be an integer ≥ 1, got 2.5"],
    ["num_train_epochs: -1", "'num_train_epochs' must be an integer ≥ 1, got -1"],
    ["warmup_ratio: 1.5", "'warmup_ratio' must be a finite number in [0, 1], got 1.5"],
    ["seed: 4294967296", "'seed' must be an integer in [0, 4294967295], got 4294967296"],
    ["top_p: 0", "'top_p' must be a finite number in (0, 1], got 0"],
    ["iterations: 0", "'iterations' must be an integer ≥ 1, got 0"],
    ["threads: 1.5", "'threads' must be an integer ≥ 1, got 1.5"],
    // not finite
    ["learning_rate: .inf", "'learning_rate' must be a finite number ≥ 0, got Infinity"],
    ["max_grad_norm: .nan", "'max_grad_norm' must be a finite number ≥ 0, got NaN"],
    ["temperature: -.inf", "'temperature' must be a finite number ≥ 0, got -Infinity"],
    // booleans, choices, text
    ['do_sample: "yes"', `'do_sample' must be true or false, got "yes"`],
    ["bf16: 1", "'bf16' must be true or false, got 1"],
    ["lr_scheduler_type: polynomial", `'lr_scheduler_type' must be one of linear, cosine, constant, constant_with_warmup, got "polynomial"`],
    ["split: validation", `'split' must be one of train, test, got "validation"`],
    ["input: 7", "'input' must be a non-empty string, got 7"],
    // nested values
    ["dataset_mixer:\n  data.jsonl: '0.5'", `the dataset_mixer fraction of data.jsonl must be a number with 0 < fraction ≤ 1, got "0.5"`],
    ["iteration_schedule:\n  - {learning_rate: 5.0e-7}\n  - {learning_rate: fast}", `'iteration_schedule[1].learning_rate' must be a finite number ≥ 0, got "fast"`],
  ];
  test.each(cases)("%s", async (text, message) => {
    const file = yaml(`model_name_or_path: /models/base\n${text}\n`);
    expect((await refusal(file)).message).toBe(`${file}: ${message}`);
  });
});

describe("--key=value overrides", () => {
  test("are converted to the key's type; one that does not convert is refused, naming the key and the command line", async () => {
    const file = yaml("model_name_or_path: /models/base\nlearning_rate: 5.0e-7\noutput_dir: run\n");
    const config = await loadRunConfig(file, ["--learning_rate=1e-6", "--output_dir=2024", "--bf16=true", "--seed=7"]);
    expect(config).toMatchObject({ learning_rate: 1e-6, output_dir: "2024", bf16: true, seed: 7 });
    expect(trainingFields(config)).toMatchObject({ learningRate: 1e-6, outputDir: "2024", bf16: true, seed: 7 });

    expect((await refusal(file, ["--learning_rate=abc"])).message).toBe(`command line: 'learning_rate' must be a finite number ≥ 0, got "abc"`);
    expect((await refusal(file, ["--max_new_tokens=1.5"])).message).toBe("command line: 'max_new_tokens' must be an integer ≥ 1, got 1.5");
    expect((await refusal(null, ["--beta=.inf"])).message).toBe("command line: 'beta' must be a finite number > 0, got Infinity");
    // a bad value in the file that the command line overrides is not used, so not an error
    const overridden = yaml("beta: cold\n");
    expect(await loadRunConfig(overridden, ["--beta=0.2"])).toEqual({ beta: 0.2 });
  });
});

describe("trainingFields and iterationSchedule check what they map", () => {
  test("a raw config (not read by loadRunConfig) is checked too, naming the key", () => {
    expect(() => trainingFields({ learning_rate: "5e-7" })).toThrow(`config: 'learning_rate' must be a finite number ≥ 0, got "5e-7"`);
    expect(() => trainingFields({ gradient_accumulation_steps: 0 })).toThrow("config: 'gradient_accumulation_steps' must be an integer ≥ 1, got 0");
    expect(() => trainingFields({ precompute_opponent: "false" })).toThrow(`config: 'precompute_opponent' must be true or false, got "false"`);
    expect(() => iterationSchedule({ iteration_schedule: [{ beta: 0.1 }, { beta: "5.0" }] })).toThrow(`config: 'iteration_schedule[1].beta' must be a finite number > 0, got "5.0"`);
    expect(trainingFields({ learning_rate: 5e-7, optim: "adamw_torch", save_strategy: "epochs", warmup_steps: null })).toEqual({
      learningRate: 5e-7,
      optim: "adamw",
      saveStrategy: "epoch",
      warmupSteps: null,
    });
  });
});

test("`spin-native train` refuses a bad value before any work: exit 2, the key named", async () => {
  // The model, data and output folders do not exist: the value is refused before they are looked at.
  const file = yaml(`model_name_or_path: ${path.join(root, "no-model")}\ninput: ${path.join(root, "no-data.jsonl")}\noutput_dir: ${path.join(root, "no-run")}\nbeta: "0.1"\n`);
  const exit = await runCli(["train", file]);
  expect(exit.code, show(exit)).toBe(2);
  expect(exit.stderr).toBe(`spin-native: ${file}: 'beta' must be a finite number > 0, got "0.1"\n`);
});
