// Builds the demo's shipped assets (run once; the outputs are committed):
//   examples/demo/data/train.jsonl   the first 2 000 of θ0's 20 000 SFT rows (reversal and
//                                    sorting prompts as chat rows, the tasks shuffled together)
//   examples/demo/data/test.jsonl    150 held-out rows per task
//   examples/demo/model/             θ0: a tiny Llama, deliberately under-trained by
//                                    spin-native's own SftTrainer, with its tokenizer
// node dist/examples/demo/make-demo.js
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { CausalLM, SftTrainer, Tokenizer, manualSeed, ones, randn, saveSafetensors, scope, setNumThreads, type Tensor } from "../../lib/index.js";
import { DEMO_BASE_SFT_STEPS, DEMO_SFT, DEMO_SFT_ROWS_PER_TASK, DEMO_SHIPPED_TRAIN_ROWS, DEMO_VOCAB_SIZE, demoSplits, sftRow, spinRow, writeDemoTokenizer } from "../../lib/run/demo/task.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const demoDir = path.resolve(here, "..", "..", "..", "examples", "demo");

/** The demo architecture (~0.75M parameters): small enough for a 2-core CPU, large enough to learn both tasks. */
export const DEMO_CONFIG = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  vocab_size: DEMO_VOCAB_SIZE,
  hidden_size: 128,
  intermediate_size: 352,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: false,
  torch_dtype: "float32",
  bos_token_id: 1,
  eos_token_id: 1,
  pad_token_id: 2,
};

function randomWeights(): Record<string, Tensor> {
  const c = DEMO_CONFIG;
  const headDim = c.hidden_size / c.num_attention_heads;
  const w = (rows: number, cols: number) => randn([rows, cols]).mul(0.02);
  return scope(() => {
    const t: Record<string, Tensor> = {
      "model.embed_tokens.weight": w(c.vocab_size, c.hidden_size),
      "model.norm.weight": ones([c.hidden_size]),
      "lm_head.weight": w(c.vocab_size, c.hidden_size),
    };
    for (let i = 0; i < c.num_hidden_layers; i++) {
      const p = `model.layers.${i}.`;
      t[`${p}input_layernorm.weight`] = ones([c.hidden_size]);
      t[`${p}post_attention_layernorm.weight`] = ones([c.hidden_size]);
      t[`${p}self_attn.q_proj.weight`] = w(c.num_attention_heads * headDim, c.hidden_size);
      t[`${p}self_attn.k_proj.weight`] = w(c.num_key_value_heads * headDim, c.hidden_size);
      t[`${p}self_attn.v_proj.weight`] = w(c.num_key_value_heads * headDim, c.hidden_size);
      t[`${p}self_attn.o_proj.weight`] = w(c.hidden_size, c.num_attention_heads * headDim);
      t[`${p}mlp.gate_proj.weight`] = w(c.intermediate_size, c.hidden_size);
      t[`${p}mlp.up_proj.weight`] = w(c.intermediate_size, c.hidden_size);
      t[`${p}mlp.down_proj.weight`] = w(c.hidden_size, c.intermediate_size);
    }
    return t;
  });
}

async function main(): Promise<void> {
  const sftSteps = Number(process.argv[2] ?? DEMO_BASE_SFT_STEPS);
  setNumThreads(1); // a model this small runs fastest on one thread
  const { train, test } = demoSplits(DEMO_SFT_ROWS_PER_TASK, 150);
  mkdirSync(path.join(demoDir, "data"), { recursive: true });
  const shipped = train.slice(0, DEMO_SHIPPED_TRAIN_ROWS);
  writeFileSync(path.join(demoDir, "data", "train.jsonl"), shipped.map((e) => JSON.stringify(sftRow(e))).join("\n") + "\n");
  writeFileSync(path.join(demoDir, "data", "test.jsonl"), test.map((e) => JSON.stringify(sftRow(e))).join("\n") + "\n");

  const init = mkdtempSync(path.join(os.tmpdir(), "spin-demo-init-"));
  writeDemoTokenizer(init);
  writeFileSync(path.join(init, "config.json"), JSON.stringify(DEMO_CONFIG, null, 2));
  manualSeed(42);
  const weights = randomWeights();
  await saveSafetensors(path.join(init, "model.safetensors"), weights);
  for (const t of Object.values(weights)) t.dispose();

  const model = await CausalLM.load(init);
  const tokenizer = await Tokenizer.fromDir(init);
  const out = mkdtempSync(path.join(os.tmpdir(), "spin-demo-sft-"));
  const trainer = new SftTrainer({
    model,
    tokenizer,
    config: { ...DEMO_SFT, outputDir: out, maxSteps: sftSteps, saveStrategy: "no", loggingSteps: 50, logToConsole: true, maxLength: 64, maxPromptLength: 48 },
  });
  await trainer.train(train.map(spinRow));
  trainer.dispose();
  await model.save(path.join(demoDir, "model"));
  rmSync(init, { recursive: true, force: true });
  rmSync(out, { recursive: true, force: true });
  console.log(`wrote ${path.join(demoDir, "model")} after ${sftSteps} SFT updates`);
}

await main();
