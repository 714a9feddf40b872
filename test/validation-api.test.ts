// API values are checked where they enter, before any work, naming the field or option: the
// trainers' config (lib/spin/config.ts: a number must be a finite number, not a string
// that parses; integers where needed; booleans), SelfPlayGenerator's sampling options and
// flags (lib/spin/generator.ts), and the optimizer's hyper-parameters and step arguments
// (lib/spin/optim.ts): a non-finite or negative learning rate is refused and the weights stay as
// they were, instead of every weight becoming NaN.
import path from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { CausalLM, Optimizer, SelfPlayGenerator, type SelfPlayOptions, SftTrainer, SpinNativeError, SpinTrainer, scope, setNumThreads, tensor } from "../lib/index.js";
import { removeRoot, tempRoot, writeFixture } from "./fixtures.js";
import { rejection, valuesOf } from "./helpers.js";
import { writeCharModel } from "./tiny-char-model.js";
import { tinyTokenizer } from "./tiny-tokenizer.js";
import { SPIN_DEFAULTS, resolveConfig } from "../lib/spin/config.js";

const root = tempRoot("validation-api");
const tok = tinyTokenizer();
let llamaDir: string;
let charModel: CausalLM;

beforeAll(async () => {
  setNumThreads(1);
  llamaDir = path.join(root, "llama");
  await writeFixture(llamaDir, "llama");
  await writeCharModel(path.join(root, "char"));
  charModel = await CausalLM.load(path.join(root, "char"));
});
afterAll(() => {
  charModel?.dispose();
  removeRoot(root);
});

/** What `make` throws: a SpinNativeError INVALID_ARGUMENT whose message holds `named` (fails the test otherwise). */
function refusal(make: () => unknown, named: string): SpinNativeError {
  let error: unknown = null;
  try {
    make();
  } catch (e) {
    error = e;
  }
  expect(error, `${named}: accepted`).toBeInstanceOf(SpinNativeError);
  expect((error as SpinNativeError).code).toBe("INVALID_ARGUMENT");
  expect((error as Error).message).toContain(named);
  return error as SpinNativeError;
}

describe("trainer config: every field checked for type, finiteness, range and integer-ness", () => {
  const spin: [string, unknown][] = [
    ["learningRate", "5e-7"],
    ["learningRate", Infinity],
    ["maxGradNorm", Infinity],
    ["warmupRatio", "0.1"],
    ["beta", Infinity],
    ["beta", "0.1"],
    ["labelSmoothing", "0.1"],
    ["seed", 1.5],
    ["seed", -1],
    ["seed", "42"],
    ["gradientCheckpointing", "yes"],
    ["bf16", 1],
    ["precomputeOpponent", "no"],
    ["logToConsole", "true"],
  ];
  test.each(spin)("SpinTrainer %s = %j → INVALID_ARGUMENT naming the field", (field, value) => {
    const error = refusal(() => new SpinTrainer({ model: null as unknown as CausalLM, tokenizer: tok, config: { outputDir: path.join(root, "x"), [field]: value } }), field);
    expect(error.message).toMatch(new RegExp(`^trainer config: ${field} must be .+, got `));
  });

  const sft: [string, unknown][] = [
    ["learningRate", Infinity],
    ["seed", "1"],
    ["bf16", "false"],
  ];
  test.each(sft)("SftTrainer %s = %j → INVALID_ARGUMENT naming the field", (field, value) => {
    refusal(() => new SftTrainer({ model: null as unknown as CausalLM, tokenizer: tok, config: { outputDir: path.join(root, "x"), [field]: value } }), field);
  });
});

describe("SelfPlayGenerator: sampling options and flags checked at construction, naming the option", () => {
  const cases: [keyof SelfPlayOptions, unknown][] = [
    ["temperature", Number.NaN],
    ["temperature", -1],
    ["temperature", "0.7"],
    ["topP", 1.5],
    ["topP", 0],
    ["topK", 2.5],
    ["topK", -1],
    ["minP", 2],
    ["repetitionPenalty", 0],
    ["repetitionPenalty", Infinity],
    ["doSample", "true"],
    ["keepStopSequences", 1],
    ["lengthSortedBatching", "no"],
    ["eosTokenIds", [1.5]],
    ["stopSequences", [""]],
  ];
  test.each(cases)("%s = %j", (option, value) => {
    refusal(() => new SelfPlayGenerator({ model: charModel, tokenizer: tok, options: { [option]: value } }), `SelfPlayGenerator: ${option} must be`);
  });

  test("sampling with temperature 0", () => {
    refusal(() => new SelfPlayGenerator({ model: charModel, tokenizer: tok, options: { doSample: true, temperature: 0 } }), "temperature must be > 0 when doSample is true");
  });
});

describe("Optimizer", () => {
  const IDS = [
    [3, 9, 17, 25, 1, 40, 12],
    [5, 5, 60, 2, 33, 8, 19],
  ];

  function backward(model: CausalLM): void {
    scope(() => {
      const ids = tensor(IDS, { dtype: "int64" });
      const mask = tensor(IDS.map((r) => r.map(() => 1)), { dtype: "int64" });
      model.forward(ids, mask).logSoftmax(-1).select(2, 7).mean().backward();
    });
  }

  function weights(model: CausalLM): number[] {
    return [...model.parameters().values()].flatMap((p) => {
      const values = valuesOf(p);
      p.dispose();
      return values;
    });
  }

  test("step: a non-finite or negative lr or maxGradNorm is refused before anything changes; the gradients stay for a valid step", async () => {
    using model = await CausalLM.load(llamaDir);
    const optimizer = new Optimizer(model, { kind: "rmsprop" });
    backward(model);
    const before = weights(model);
    const bad: [number, number, string][] = [
      [Number.NaN, 1, "lr must be a finite number ≥ 0, got NaN"],
      [Infinity, 1, "lr must be a finite number ≥ 0, got Infinity"],
      [-1e-3, 1, "lr must be a finite number ≥ 0, got -0.001"],
      [1e-3, Number.NaN, "maxGradNorm must be a finite number ≥ 0, got NaN"],
      [1e-3, -1, "maxGradNorm must be a finite number ≥ 0, got -1"],
    ];
    for (const [lr, maxGradNorm, message] of bad) {
      const error = await rejection<SpinNativeError>(optimizer.step(lr, maxGradNorm));
      expect(error, message).toBeInstanceOf(SpinNativeError);
      expect(error.code).toBe("INVALID_ARGUMENT");
      expect(error.message).toBe(`optimizer.step: ${message}`);
    }
    await expect(optimizer.step("0.001" as unknown as number, 1)).rejects.toThrow(TypeError);
    expect(weights(model)).toEqual(before);
    expect(optimizer.steps).toBe(0);

    const { applied } = await optimizer.step(1e-3, 1);
    expect(applied).toBe(true);
    expect(optimizer.steps).toBe(1);
    const after = weights(model);
    expect(after.every(Number.isFinite)).toBe(true);
    expect(after).not.toEqual(before);
  });

  test("constructor: an unknown kind or a hyper-parameter out of range is refused, naming it", async () => {
    using model = await CausalLM.load(llamaDir);
    const cases: [Record<string, unknown>, string][] = [
      [{ kind: "sgd" }, `optimizer: kind must be "rmsprop" or "adamw", got "sgd"`],
      [{ kind: "rmsprop", alpha: 1 }, "optimizer: alpha must be a finite number in [0, 1), got 1"],
      [{ kind: "adamw", beta2: Number.NaN }, "optimizer: beta2 must be a finite number in [0, 1), got NaN"],
      [{ kind: "adamw", eps: 0 }, "optimizer: eps must be a finite number > 0, got 0"],
      [{ kind: "adamw", weightDecay: -0.01 }, "optimizer: weightDecay must be a finite number ≥ 0, got -0.01"],
    ];
    for (const [options, message] of cases) {
      expect(refusal(() => new Optimizer(model, options as unknown as ConstructorParameters<typeof Optimizer>[1]), message).message).toBe(message);
    }
  });
});

describe("unknown trainer config fields", () => {
  test("a misspelt field is refused, naming it and the field it resembles", () => {
    expect(() => resolveConfig(SPIN_DEFAULTS, { outputDir: "out", learning_rate: 1e-3 } as never)).toThrow(/unknown field 'learning_rate' \(did you mean 'learningRate'\?\)/);
    expect(() => resolveConfig(SPIN_DEFAULTS, { outputDir: "out", lr: 1e-3 } as never)).toThrow(/unknown field 'lr'$/);
  });
});

describe("unknown generator options", () => {
  test("a misspelt option is refused, naming it", async () => {
    const model = await CausalLM.load(llamaDir);
    const make = () => new SelfPlayGenerator({ model, tokenizer: tinyTokenizer(), options: { batch_size: 4 } as SelfPlayOptions });
    expect(make).toThrow(/unknown option 'batch_size'/);
    model.dispose();
  });
});
