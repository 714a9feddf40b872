// `spin-native merge`: a base model and a LoRA adapter folded into one plain HF model folder.
import { stringKey, type RawConfig } from "../config.js";
import { loadModel, makeOutputFolder } from "./common.js";

export async function merge(config: RawConfig): Promise<void> {
  stringKey(config, "adapter", true);
  const outputDir = stringKey(config, "output_dir", true);
  await makeOutputFolder(outputDir);
  const model = await loadModel(config);
  try {
    // With an adapter attached, save() writes the merged weights.
    await model.save(outputDir);
  } finally {
    model.dispose();
  }
  console.log(`wrote ${outputDir}`);
}
