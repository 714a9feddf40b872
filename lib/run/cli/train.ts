// `spin-native train` (SPIN) and `spin-native sft`: one training run on a dataset mix,
// data-parallel under `spin-native launch`; resumes from the newest checkpoint.
import path from "node:path";

import { lockRunFolder, runCommand } from "../../core/run-lock.js";
import { Distributed } from "../../distributed/distributed.js";
import { Tokenizer } from "../../model/tokenizer.js";
import { SftTrainer, SpinTrainer } from "../../spin/trainer.js";
import { type RawConfig, distributedOptions, stringKey, trainingFields } from "../config.js";
import { createProgress } from "../progress.js";
import { interruptSignal, interrupted, loadModel, makeOutputFolder, mixedRows } from "./common.js";

export const train = (config: RawConfig): Promise<void> => trainCommand(config, "spin");
export const sft = (config: RawConfig): Promise<void> => trainCommand(config, "sft");

async function trainCommand(config: RawConfig, kind: "spin" | "sft"): Promise<void> {
  const modelDir = stringKey(config, "model_name_or_path", true);
  const outputDir = stringKey(config, "output_dir", true);
  await makeOutputFolder(outputDir);
  // Under `spin-native launch` (WORLD_SIZE > 1) the run is data-parallel.
  const distributed = await Distributed.fromEnv(process.env, await distributedOptions(config));
  // The folder is held from before the load (a refused duplicate wastes nothing) until the
  // final model is written.
  const lock = await lockRunFolder(outputDir, runCommand(`spin-native ${kind === "spin" ? "train" : "sft"}`), distributed);
  try {
    await trainAndSave(config, kind, outputDir, modelDir, distributed);
  } finally {
    lock?.release();
  }
  distributed?.destroy();
}

async function trainAndSave(config: RawConfig, kind: "spin" | "sft", outputDir: string, modelDir: string, distributed: Distributed | null): Promise<void> {
  const rows = await mixedRows(config, "train");
  const model = await loadModel(config, true);
  const tokenizer = await Tokenizer.fromDir(modelDir);
  const fields = { ...trainingFields(config), outputDir, logToConsole: true };
  const trainer =
    kind === "spin" ? new SpinTrainer({ model, tokenizer, config: fields, distributed }) : new SftTrainer({ model, tokenizer, config: fields, distributed });
  const progress = createProgress(kind === "spin" ? "SPIN" : "SFT");
  trainer.on("step", (s) => progress.update(s.step, s.totalSteps, `loss ${s.metrics.loss?.toFixed(4)}`));
  const signal = interruptSignal();
  const result = await trainer.train(rows, { resumeFrom: "latest", signal, allowConfigChange: config.allow_config_change === true, folderLocked: true });
  trainer.dispose();
  if (result.aborted) interrupted(`stopped after update ${result.globalStep}, checkpoint saved in ${outputDir}`);
  else progress.done(`${result.globalStep} updates`);
  if (!result.aborted && (distributed?.isMain ?? true)) {
    if (model.adapter) await model.saveAdapter(path.join(outputDir, "adapter"));
    // With an adapter attached, save() writes the merged weights.
    if (!model.adapter || config.merge_adapters === true) await model.save(path.join(outputDir, "model"));
  }
  await distributed?.barrier();
  model.dispose();
}
