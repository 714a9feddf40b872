// `spin-native generate`: self-play generation of SPIN rows from SFT prompts (resumable).
import type { RawRow } from "../../data/dataset-read.js";
import { Tokenizer } from "../../model/tokenizer.js";
import { SelfPlayGenerator } from "../../spin/generator.js";
import { type RawConfig, stringKey } from "../config.js";
import { createProgress } from "../progress.js";
import { generationOptions, interruptSignal, interrupted, loadModel, makeOutputFolder, streamRawRows } from "./common.js";

export async function generate(config: RawConfig): Promise<void> {
  const modelDir = stringKey(config, "model_name_or_path", true);
  const split = stringKey(config, "split") ?? "train";
  const outputDir = stringKey(config, "output_dir", true);
  await makeOutputFolder(outputDir);
  const rows: RawRow[] = [];
  for await (const row of streamRawRows(stringKey(config, "input", true), split as "train" | "test")) rows.push(row);
  const model = await loadModel(config);
  const tokenizer = await Tokenizer.fromDir(modelDir);
  const generator = new SelfPlayGenerator({ model, tokenizer, options: { ...generationOptions(config), split, rowLocation: (i) => rows[i]! } });
  const progress = createProgress("generate");
  const signal = interruptSignal();
  generator.on("progress", (p) => {
    progress.update(p.rows, p.total, `${p.tokensPerSecond.toFixed(0)} tok/s`);
    // Ctrl-C stops the run at this batch boundary: the rows written so far stay, and a re-run resumes after them. A second Ctrl-C kills at once.
    signal.throwIfAborted();
  });
  const summary = await generator.run(rows.map((r) => r.raw), outputDir).catch((error: unknown) => {
    if (signal.aborted) return null;
    throw error;
  });
  if (summary === null) interrupted(`generation stopped, the rows written so far are kept in ${outputDir}`);
  else progress.done(`${summary.rows} rows, EOS rate ${(100 * summary.eosRate).toFixed(1)}%`);
  model.dispose();
}
