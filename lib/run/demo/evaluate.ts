// Held-out scores of the demo: exact-match accuracy of greedy answers (overall and per task)
// and the mean log-probability of the ground-truth response (its tokens, EOS included).
import { noGrad } from "../../core/runtime.js";
import type { CausalLM } from "../../model/causal-lm.js";
import type { Tokenizer } from "../../model/tokenizer.js";
import { SpinCollator } from "../../spin/collator.js";
import { DEMO_TASKS, type DemoExample, type DemoTask, spinRow } from "./task.js";

export interface DemoScores {
  accuracy: number;
  /** Exact match per task. */
  taskAccuracy: Record<DemoTask, number>;
  meanLogprob: number;
}

/** Longest demo answer (9 characters) plus EOS, with one token to spare. */
export const DEMO_MAX_NEW_TOKENS = 11;

/** Held-out scores of `model` on `examples`: greedy exact match (overall and per task) and mean log p(ground truth). */
export async function scoreModel(model: CausalLM, tokenizer: Tokenizer, examples: DemoExample[], batchSize = 150): Promise<DemoScores> {
  const correct = Object.fromEntries(DEMO_TASKS.map((t) => [t, 0])) as Record<DemoTask, number>;
  const count = Object.fromEntries(DEMO_TASKS.map((t) => [t, 0])) as Record<DemoTask, number>;
  let logprob = 0;
  const collator = new SpinCollator({ tokenizer, maxLength: 64, maxPromptLength: 48 });
  for (let start = 0; start < examples.length; start += batchSize) {
    const chunk = examples.slice(start, start + batchSize);
    const prompts = chunk.map((e) => tokenizer.promptText([{ role: "user", content: e.prompt }]));
    const result = await model.generate(prompts, { tokenizer, maxNewTokens: DEMO_MAX_NEW_TOKENS, doSample: false, eosTokenIds: [tokenizer.eosTokenId!] });
    result.generations.forEach((g, i) => {
      const e = chunk[i]!;
      count[e.task]++;
      if (g.text?.trim() === e.answer) correct[e.task]++;
    });
    const batch = collator.collateSft(chunk.map(spinRow));
    const out = await noGrad(() => model.logprobs(batch.ids, batch.attentionMask, batch.labels));
    logprob += out.sum.sum().item() as number;
    for (const t of [batch.ids, batch.attentionMask, batch.labels, out.sum, out.tokens, out.logitMean]) t.dispose();
  }
  const total = DEMO_TASKS.reduce((s, t) => s + correct[t], 0);
  const taskAccuracy = Object.fromEntries(DEMO_TASKS.map((t) => [t, count[t] ? correct[t] / count[t] : NaN])) as Record<DemoTask, number>;
  return { accuracy: total / examples.length, taskAccuracy, meanLogprob: logprob / examples.length };
}
