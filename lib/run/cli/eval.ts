// `spin-native eval`: held-out metrics of a model — the mean NLL of the real responses and,
// with an opponent, the SPIN metrics against it. Nothing is written.
import { readSpinRows } from "../../data/dataset-read.js";
import { CausalLM } from "../../model/causal-lm.js";
import { Tokenizer } from "../../model/tokenizer.js";
import { SPIN_DEFAULTS } from "../../spin/config.js";
import { evaluateSft, evaluateSpin } from "../../spin/evaluate.js";
import { type RawConfig, stringKey, trainingFields } from "../config.js";
import { loadModel, loadOptions } from "./common.js";

export async function evaluate(config: RawConfig): Promise<void> {
  const modelDir = stringKey(config, "model_name_or_path", true);
  const rows = await readSpinRows(stringKey(config, "input", true), (stringKey(config, "split") ?? "test") as "train" | "test");
  const model = await loadModel(config);
  const tokenizer = await Tokenizer.fromDir(modelDir);
  const settings = { ...SPIN_DEFAULTS, ...trainingFields(config) };
  const options = { tokenizer, batchSize: settings.perDeviceTrainBatchSize, maxLength: settings.maxLength, maxPromptLength: settings.maxPromptLength, bf16: settings.bf16 };
  const metrics: Record<string, number> = await evaluateSft(model, rows, options);
  const opponentDir = stringKey(config, "opponent");
  if (opponentDir) {
    const opponent = await CausalLM.load(opponentDir, loadOptions(config));
    Object.assign(metrics, await evaluateSpin(model, opponent, rows, settings, options));
    opponent.dispose();
  }
  console.log(JSON.stringify(metrics, null, 2));
  model.dispose();
}
