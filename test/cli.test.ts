// The spin-native command line (lib/cli.ts, lib/run/config.ts), run as the installed binary
// would be: `node dist/lib/cli.js …` in a child process. Usage and exit codes, config errors
// (an unknown key in the YAML file, in a --key=value override or in iteration_schedule is
// exit code 2 naming the nearest valid key), `convert` round trips and `info`. The SPIN loop
// through `spin-native iterate` is pipeline.test.ts.
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { readSpinRows } from "../lib/index.js";
import { KNOWN_KEYS, distributedOptions, nearestKey } from "../lib/run/config.js";
import { type Exit, ensureDist, runCli } from "./cli-helpers.js";
import { removeRoot, tempRoot } from "./fixtures.js";

const root = tempRoot("cli");

beforeAll(() => ensureDist(), 120_000);
afterAll(() => removeRoot(root));

const COMMANDS = ["generate", "train", "sft", "iterate", "convert", "eval", "demo", "info"] as const;
const show = (exit: Exit) => `exit ${exit.code} (${exit.signal})\nstdout:\n${exit.stdout}\nstderr:\n${exit.stderr}`;

describe("usage", () => {
  test("`<command> --help` prints the command's usage and exits 0, for every command the help lists", async () => {
    const listing = await runCli(["--help"]);
    const listed = [...listing.stdout.matchAll(/^ {2}spin-native (\w+)/gm)].map((m) => m[1]!);
    expect(listed).toEqual(expect.arrayContaining([...COMMANDS]));
    const runs = await Promise.all(listed.map((command) => runCli([command, "--help"])));
    runs.forEach((exit, i) => {
      const command = listed[i]!;
      expect(exit.code, show(exit)).toBe(0);
      expect(exit.stdout.startsWith(`spin-native ${command}`), `${command}: ${exit.stdout}`).toBe(true);
      expect(exit.stdout.trimEnd().split("\n").length, `${command} has a description line`).toBeGreaterThanOrEqual(2);
      expect(exit.stderr).toBe("");
    });
    // --help wins over everything else on the line (a config file, overrides, even bad ones)
    const mixed = await Promise.all([runCli(["train", "missing.yaml", "--learning_rat=1", "-h"]), runCli(["demo", "--out=/nonexistent", "--help"])]);
    expect(mixed[0]!.code, show(mixed[0]!)).toBe(0);
    expect(mixed[0]!.stdout).toMatch(/^spin-native train config\.yaml/);
    expect(mixed[1]!.code, show(mixed[1]!)).toBe(0);
    expect(mixed[1]!.stdout).toMatch(/^spin-native demo/);
  });

  test("no command, `help` and `--help` print the command list and exit 0", async () => {
    for (const exit of await Promise.all([runCli([]), runCli(["help"]), runCli(["--help"])])) {
      expect(exit.code, show(exit)).toBe(0);
      expect(exit.stdout).toMatch(/^spin-native <command> \[options\]/);
      for (const command of COMMANDS) expect(exit.stdout).toContain(`spin-native ${command}`);
    }
  });

  test("an unknown command exits 2 with the help text", async () => {
    const exit = await runCli(["trian", "config.yaml"]);
    expect(exit.code, show(exit)).toBe(2);
    expect(exit.stderr).toContain("unknown command 'trian'");
    expect(exit.stderr).toContain("spin-native <command> [options]");
    for (const command of COMMANDS) expect(exit.stderr).toContain(`spin-native ${command}`);
    expect(exit.stdout).toBe("");
  });
});

describe("config errors: exit code 2, naming the nearest valid key", () => {
  const config = (name: string, text: string) => {
    const file = path.join(root, name);
    writeFileSync(file, text);
    return file;
  };

  test("an unknown key in the YAML file", async () => {
    const file = config("typo.yaml", "model_name_or_path: /nowhere\nlearning_rat: 5.0e-7\nbeta: 0.1\n");
    const exit = await runCli(["train", file]);
    expect(exit.code, show(exit)).toBe(2);
    expect(exit.stderr).toContain(`${file}: unknown key 'learning_rat' — did you mean 'learning_rate'?`);
  });

  test("an unknown key in a --key=value override (a YAML file with valid keys, or none)", async () => {
    const file = config("valid.yaml", "model_name_or_path: /nowhere\nlearning_rate: 5.0e-7\n");
    const [withFile, withoutFile] = await Promise.all([
      runCli(["train", file, "--beta=0.1", "--per_device_batch_size=4"]),
      runCli(["sft", "--num_epochs=3"]),
    ]);
    expect(withFile.code, show(withFile)).toBe(2);
    expect(withFile.stderr).toContain("command line: unknown key 'per_device_batch_size' — did you mean 'per_device_train_batch_size'?");
    expect(withoutFile.code, show(withoutFile)).toBe(2);
    expect(withoutFile.stderr).toContain("unknown key 'num_epochs' — did you mean 'num_train_epochs'?");
  });

  test("an unknown key in an iteration_schedule entry, a bad dataset_mixer fraction, a malformed override, a missing key", async () => {
    const file = config("schedule.yaml", "model_name_or_path: /nowhere\noutput_dir: /nowhere-run\ninput: /nowhere.jsonl\niteration_schedule:\n  - {learning_rate: 5.0e-7, beta: 0.1}\n  - {learning_rat: 1.0e-7}\n");
    const mixer = config("mixer.yaml", "model_name_or_path: /nowhere\noutput_dir: /nowhere-run\ndataset_mixer:\n  /nowhere.jsonl: 1.5\n");
    const [schedule, fraction, malformed, missing] = await Promise.all([
      runCli(["iterate", file]),
      runCli(["iterate", mixer]),
      runCli(["train", "--learning_rate", "5e-7"]),
      runCli(["train", "--learning_rate=5e-7"]),
    ]);
    expect(schedule.code, show(schedule)).toBe(2);
    expect(schedule.stderr).toContain("iteration_schedule[1]: unknown key 'learning_rat' — did you mean 'learning_rate'?");
    expect(fraction.code, show(fraction)).toBe(2);
    expect(fraction.stderr).toContain("the dataset_mixer fraction of /nowhere.jsonl must be a number with 0 < fraction ≤ 1, got 1.5");
    expect(malformed.code, show(malformed)).toBe(2);
    expect(malformed.stderr).toContain("argument '--learning_rate' is not of the form --key=value");
    // a required key that is missing is a usage error as well
    expect(missing.code, show(missing)).toBe(2);
    expect(missing.stderr).toContain("'model_name_or_path' is required");
  });

  test("nearestKey: typical typos and near-misses", () => {
    const cases: Record<string, string> = {
      learning_rat: "learning_rate",
      per_device_batch_size: "per_device_train_batch_size",
      num_epochs: "num_train_epochs",
      warmup: "warmup_ratio",
      max_new_token: "max_new_tokens",
      iteratons: "iterations",
      push_to_hb: "push_to_hub",
      gradient_accumulation: "gradient_accumulation_steps",
      Learning_Rate: "learning_rate",
      dataset_mix: "dataset_mixer",
      eval_batch_size: "per_device_eval_batch_size",
    };
    for (const [typo, key] of Object.entries(cases)) expect(nearestKey(typo), typo).toBe(key);
    for (const key of KNOWN_KEYS) expect(nearestKey(key)).toBe(key);
  });

  test("ddp_bucket_cap_mb and ddp_timeout: transformers' units, positive numbers", async () => {
    expect(await distributedOptions({ ddp_bucket_cap_mb: 0.5, ddp_timeout: 60 })).toEqual({ bucketBytes: 524288, timeoutMs: 60_000, sharding: 0 });
    expect(await distributedOptions({})).toEqual({ timeoutMs: 1_800_000, sharding: 0 });
    await expect(distributedOptions({ ddp_timeout: 0 })).rejects.toThrow("config: 'ddp_timeout' must be a positive number");
    await expect(distributedOptions({ ddp_bucket_cap_mb: "big" })).rejects.toThrow("config: 'ddp_bucket_cap_mb' must be a number");
  });
});

describe("convert", () => {
  test("a.jsonl (any accepted row shape) → b.parquet → c.jsonl round trip", async () => {
    const a = path.join(root, "a.jsonl");
    const rows = [
      { real: [{ role: "user", content: "say cat" }, { role: "assistant", content: "tac" }], generated: [{ role: "user", content: "say cat" }, { role: "assistant", content: "tc" }] },
      { messages: [{ role: "system", content: "be brief" }, { role: "user", content: "say dog" }, { role: "assistant", content: "god" }] },
      { prompt: "say owl", response: "lwo" },
      { prompt: "say émoji 🦉?", chosen: "ok", rejected: "" },
    ];
    writeFileSync(a, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
    const b = path.join(root, "b.parquet");
    const c = path.join(root, "c.jsonl");
    const toParquet = await runCli(["convert", a, b]);
    expect(toParquet.code, show(toParquet)).toBe(0);
    expect(toParquet.stdout).toContain(`wrote ${JSON.stringify({ file: b, rows: 4, format: "parquet" })}`);
    expect(readFileSync(b).subarray(0, 4).toString()).toBe("PAR1");
    const toJsonl = await runCli(["convert", b, c]);
    expect(toJsonl.code, show(toJsonl)).toBe(0);
    expect(toJsonl.stdout).toContain(`wrote ${JSON.stringify({ file: c, rows: 4, format: "jsonl" })}`);

    const expected = await readSpinRows(a);
    const plain = (list: { role: string; content: string }[]) => list.map((m) => ({ role: m.role, content: m.content }));
    expect((await readSpinRows(b)).map((r) => ({ real: plain(r.real), generated: plain(r.generated) }))).toEqual(expected);
    const lines = readFileSync(c, "utf8").trimEnd().split("\n").map((l) => JSON.parse(l) as unknown);
    expect(lines).toEqual(expected);
    expect(expected[1]).toEqual({
      real: [{ role: "system", content: "be brief" }, { role: "user", content: "say dog" }, { role: "assistant", content: "god" }],
      generated: [{ role: "system", content: "be brief" }, { role: "user", content: "say dog" }, { role: "assistant", content: "" }],
    });
  });

  test("wrong arguments: a missing TO, an unsupported extension, a missing input", async () => {
    const [oneArg, badExt, missing] = await Promise.all([
      runCli(["convert", path.join(root, "a.jsonl")]),
      runCli(["convert", path.join(root, "a.jsonl"), path.join(root, "out.csv")]),
      runCli(["convert", path.join(root, "nope.jsonl"), path.join(root, "out.jsonl")]),
    ]);
    expect(oneArg.code, show(oneArg)).toBe(2);
    expect(oneArg.stderr).toContain("convert takes FROM and TO");
    expect(badExt.code, show(badExt)).toBe(2);
    expect(badExt.stderr).toContain("must end in .jsonl or .parquet");
    expect(missing.code, show(missing)).toBe(1); // IO
    expect(missing.stderr).toContain("nope.jsonl");
  });
});

test("`info` prints the runtime as JSON", async () => {
  const exit = await runCli(["info"]);
  expect(exit.code, show(exit)).toBe(0);
  const info = JSON.parse(exit.stdout) as Record<string, unknown>;
  expect(typeof info.torchVersion).toBe("string");
  expect(info.torchVersion).toMatch(/^\d+\.\d+/);
  expect(info.numThreads).toBe(1); // OMP_NUM_THREADS=1 in the child
  expect(typeof info.cudaDeviceCount).toBe("number");
  // The loader's thread setting (lib/core/native.ts), unless this environment set its own.
  expect(info.ompWaitPolicy).toBe(process.env.OMP_WAIT_POLICY ?? "PASSIVE");
});
