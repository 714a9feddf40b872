// What `spin-native --help` and `spin-native <command> --help` print. The training keys'
// list derives from the options table (spin/config.ts).
import { OPTIONS, type OptionSpec } from "../../spin/config.js";

/** The training keys, a line each: key, default, help. */
function trainingKeys(): string {
  const rows = (Object.values(OPTIONS) as OptionSpec<unknown>[]).filter((spec) => spec.key !== null && spec.key !== "output_dir");
  const width = Math.max(...rows.map((spec) => spec.key!.length));
  return rows.map((spec) => `    ${spec.key!.padEnd(width)}  ${spec.help} (default ${typeof spec.default === "string" ? spec.default : JSON.stringify(spec.default)})`).join("\n");
}

export const USAGE: Record<string, string> = {
  generate: `spin-native generate [config.yaml] --model_name_or_path=DIR --input=DATA --output_dir=DIR [--split=train --batch_size=16 --frac_len=0 --data_frac=0 --max_new_tokens=256 --prompt_format=chat|spin-instruction --do_sample=false --temperature=1 --top_p=1 --format=jsonl|parquet]
  Self-play generation: answers every SFT prompt of DATA with the model and writes SPIN rows {real, generated} to <output_dir>/<split>/. Resumable.`,
  train: `spin-native train config.yaml [--key=value ...]
  SPIN training of model_name_or_path on dataset_mixer ({path: fraction}) and output_dir, with the original config's training keys (below). Resumes from the newest checkpoint in output_dir (refused, with the list of changes, when the settings differ from the checkpoint's; --allow_config_change=true resumes anyway and records them); the final model is written to output_dir/model.`,
  sft: `spin-native sft config.yaml [--key=value ...]
  Supervised fine-tuning on the real responses of dataset_mixer (same keys as train).`,
  iterate: `spin-native iterate config.yaml [--key=value ...]
  The SPIN loop: iterations × (generate with θt → mix with t−1 → train θt+1). Keys: model_name_or_path, dataset_mixer (SFT data), iterations, output_dir (the run folder), iteration_schedule ([{learning_rate, beta, num_train_epochs}, …]), previous_fraction, generation keys (batch_size, max_new_tokens, prompt_format, do_sample, …) and training keys. Re-running resumes at the exact stage; report.html is written after every stage.`,
  convert: `spin-native convert FROM TO
  Converts a dataset between jsonl, json and parquet (by extension), in the original's schema.`,
  eval: `spin-native eval [config.yaml] --model_name_or_path=DIR --input=DATA [--split=test --opponent=DIR]
  Held-out metrics: mean NLL of the real responses; with --opponent, the SPIN metrics against it.`,
  merge: `spin-native merge --model_name_or_path=DIR --adapter=DIR --output_dir=DIR
  Folds a LoRA adapter (PEFT format) into its base model and writes a plain Hugging Face model folder.`,
  demo: `spin-native demo [--out=DIR] [--iterations=3] [--seed=42]
  The SPIN demo on the embedded tiny model and data: θ0 → SPIN iterations (the original logistic loss, and with an SFT term; sampled self-play) → table of held-out exact match (per task), mean log-prob of the ground truth, reward margins and identical pairs, against continued SFT with the same updates (at SPIN's lr and at the best of a sweep); report.html plots them.`,
  launch: `spin-native launch --nproc-per-node=N [--nnodes=M --node-rank=R --master-addr=A --master-port=P --rdzv-id=ID] -- <command ...>
  Starts N worker processes with RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set (torchrun-style), and OMP_NUM_THREADS = cores / N unless already set; output is prefixed by rank; if a rank fails the others are stopped and the exit code is non-zero. Each job has an id (--rdzv-id, SPIN_JOB_ID, or random for one node): a rank of another job on the same port is refused.`,
  info: `spin-native info
  libtorch version, threads, BLAS build and CUDA devices.`,
};

for (const command of ["train", "sft", "iterate"]) USAGE[command] += `\n  Training keys:\n${trainingKeys()}`;

export function help(): string {
  return `spin-native <command> [options]\n\nCommands:\n${Object.values(USAGE).map((u) => "  " + u.split("\n")[0]).join("\n")}\n\nspin-native <command> --help for details.\n`;
}
