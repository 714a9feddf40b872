import path from "node:path";
import { readFileSync } from "node:fs";
import { test } from "vitest";
import { CausalLM, SelfPlayGenerator, setNumThreads } from "../lib/index.js";
import { removeRoot, tempRoot } from "./fixtures.js";
import { writeCharModel } from "./tiny-char-model.js";
import { tinyTokenizer } from "./tiny-tokenizer.js";

test("probe", async () => {
  setNumThreads(1);
  const root = tempRoot("probe");
  const dir = path.join(root, "m");
  await writeCharModel(dir);
  const model = await CausalLM.load(dir);
  const tokenizer = tinyTokenizer();
  const rows = ["hi", "what is up", "a b c", "why", "tell me a story", "ok", "yes no", "zzz"].map((x, i) => ({ prompt: x, response: "ans " + i }));
  const gen = new SelfPlayGenerator({ model, tokenizer, options: { maxNewTokens: 16, batchSize: 3 } });
  gen.on("progress", (p) => console.log("progress", JSON.stringify(p)));
  gen.on("batch", (p) => console.log("batch", JSON.stringify(p)));
  const s = await gen.run(rows, root);
  console.log(JSON.stringify(s));
  console.log(readFileSync(path.join(root, "train/train-0.jsonl"), "utf8"));
  console.log(readFileSync(path.join(root, "train/train-0.meta.json"), "utf8"));
  removeRoot(root);
});
