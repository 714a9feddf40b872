// `spin-native iterate`: the SPIN loop (generate with θt → mix with t−1 → train θt+1) over a
// run folder, resumable at the exact stage; report.html after every stage.
import type { RawRow } from "../../data/dataset-read.js";
import { fractionCount } from "../../data/mixer.js";
import { Distributed } from "../../distributed/distributed.js";
import type { SpinConfig } from "../../spin/config.js";
import { type RawConfig, distributedOptions, iterationSchedule, loraOptions, numberKey, stringKey, trainingFields } from "../config.js";
import { runPipeline } from "../pipeline.js";
import { writeReport } from "../report.js";
import { generationOptions, interruptSignal, interrupted, loadOptions, makeOutputFolder, streamRawRows } from "./common.js";

/** The SFT prompts: each source's first ⌊fraction·n⌋ rows (as the training mix subsamples), in order. */
async function sftPrompts(config: RawConfig): Promise<RawRow[]> {
  const rows: RawRow[] = [];
  const mixer = config.dataset_mixer;
  const sources: [string, number][] =
    mixer && typeof mixer === "object" && !Array.isArray(mixer) ? Object.entries(mixer).map(([source, fraction]) => [source, Number(fraction)]) : [[stringKey(config, "input", true), 1]];
  for (const [source, fraction] of sources) {
    const raw: RawRow[] = [];
    for await (const row of streamRawRows(source, "train")) raw.push(row);
    rows.push(...raw.slice(0, fractionCount(fraction, raw.length)));
  }
  return rows;
}

export async function iterate(config: RawConfig): Promise<void> {
  const runDir = stringKey(config, "output_dir", true);
  const schedule = iterationSchedule(config);
  await makeOutputFolder(runDir);
  const rows = await sftPrompts(config);
  const distributed = await Distributed.fromEnv(process.env, await distributedOptions(config));
  const adapter = stringKey(config, "adapter");
  const result = await runPipeline({
    runDir,
    baseModel: stringKey(config, "model_name_or_path", true),
    sftRows: rows.map((r) => r.raw),
    iterations: numberKey(config, "iterations") ?? 3,
    training: { ...trainingFields(config), logToConsole: true } as Partial<Omit<SpinConfig, "outputDir">>,
    ...(schedule ? { perIteration: schedule } : {}),
    generation: { ...generationOptions(config), rowLocation: (i) => rows[i]! },
    previousFraction: numberKey(config, "previous_fraction") ?? 1,
    load: loadOptions(config),
    signal: interruptSignal(),
    log: (line) => console.log(line),
    onStage: () => writeReport(runDir).then(() => undefined),
    distributed,
    allowConfigChange: config.allow_config_change === true,
    lora: loraOptions(config),
    ...(adapter ? { adapter } : {}),
    mergeAdapters: config.merge_adapters === true,
  });
  distributed?.destroy();
  if (result.aborted) interrupted(`stopped, the run folder ${runDir} keeps every finished stage`);
  else console.log(`done: ${result.finalModel}`);
}
