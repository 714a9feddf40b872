// The options table (lib/spin/config.ts OPTIONS) is the one source of every training option:
// each default fits its own rule, the YAML keys map to their fields and back through the run
// config reader, `train --help` lists every key with its default, the trainers' defaults are
// the table's, and the native side has no defaults of its own (a missing option is an error).
import path from "node:path";

import { afterAll, describe, expect, test } from "vitest";

import { CausalLM, OPTIONS, type OptionSpec, SPIN_DEFAULTS, type SpinConfig, TRAINING_DEFAULTS, ones, tensor } from "../lib/index.js";
import { native } from "../lib/core/native.js";
import { Tensor } from "../lib/core/tensor.js";
import { trainingFields } from "../lib/run/config.js";
import { USAGE } from "../lib/run/cli/usage.js";
import { fieldProblem } from "../lib/spin/config.js";
import { removeRoot, tempRoot, writeFixture } from "./fixtures.js";

const root = tempRoot("options");
afterAll(() => removeRoot(root));

const ROWS = Object.entries(OPTIONS) as [keyof SpinConfig, OptionSpec<unknown>][];

describe("the options table", () => {
  test("every default fits its own rule; outputDir alone has none", () => {
    for (const [field, spec] of ROWS) {
      if (field === "outputDir") {
        expect("default" in spec).toBe(false);
        continue;
      }
      expect(fieldProblem(field, spec.default), field).toBeNull();
      expect(SPIN_DEFAULTS[field as keyof typeof SPIN_DEFAULTS], field).toEqual(spec.default);
      if (!spec.spin) expect(TRAINING_DEFAULTS[field as keyof typeof TRAINING_DEFAULTS], field).toEqual(spec.default);
      else expect(field in TRAINING_DEFAULTS, field).toBe(false);
    }
  });

  test("YAML keys are unique and each reads back as its field, aliases mapped", () => {
    const keys = ROWS.map(([, spec]) => spec.key).filter((k): k is string => k !== null);
    expect(new Set(keys).size).toBe(keys.length);
    for (const [field, spec] of ROWS) {
      if (spec.key === null || field === "outputDir") continue;
      expect(trainingFields({ [spec.key]: spec.default as never }), spec.key).toEqual({ [field]: spec.default });
      for (const [alias, value] of Object.entries(spec.aliases ?? {})) expect(trainingFields({ [spec.key]: alias })).toEqual({ [field]: value });
    }
    expect(() => trainingFields({ loss_type: "kto" })).toThrow(/'loss_type' must be one of sigmoid, hinge, ipo/);
    expect(() => trainingFields({ optim: "sgd" })).toThrow(/'optim' must be one of rmsprop, adamw, adamw_torch, adamw_hf/);
  });

  test("`train --help` lists every YAML key with its default", () => {
    for (const [field, spec] of ROWS) {
      if (spec.key === null || field === "outputDir") continue;
      const line = USAGE.train!.split("\n").find((l) => l.trim().startsWith(spec.key + " "));
      expect(line, spec.key).toBeDefined();
      expect(line).toContain(`(default ${typeof spec.default === "string" ? spec.default : JSON.stringify(spec.default)})`);
    }
  });
});

describe("the native side takes resolved values only", () => {
  test("a missing optimizer or step option is an error naming it", async () => {
    const dir = path.join(root, "llama");
    await writeFixture(dir, "llama");
    using model = await CausalLM.load(dir);
    expect(() => native.createOptimizer(model.nativeHandle, { kind: "rmsprop" } as never)).toThrow(/option 'alpha' is required/);
    const ids = tensor([[1, 2, 3, 4], [1, 2, 5, 6]], { dtype: "int64" });
    const mask = ones([2, 4], { dtype: "int64" });
    const labels = tensor([[-100, -100, 3, 4], [-100, -100, 5, 6]], { dtype: "int64" });
    const opponent = tensor([-5]);
    const batch = { ids: Tensor.handleOf(ids), attentionMask: Tensor.handleOf(mask), labels: Tensor.handleOf(labels), opponentReal: Tensor.handleOf(opponent), opponentGenerated: Tensor.handleOf(opponent), identical: null };
    const full = { lossType: "sigmoid" as const, beta: 0.1, labelSmoothing: 0, sftWeight: 0, averageLogProb: false, scale: 1, checkpoint: false, backward: false, autocastBf16: false, packing: true };
    await expect(native.spinTrainStep(model.nativeHandle, batch, full)).resolves.toHaveProperty("loss");
    for (const key of Object.keys(full) as (keyof typeof full)[]) {
      const { [key]: _dropped, ...partial } = full;
      expect(() => native.spinTrainStep(model.nativeHandle, batch, partial as never), key).toThrow(new RegExp(`option '${key}' is required`));
    }
    for (const t of [ids, mask, labels, opponent]) t.dispose();
  });
});
