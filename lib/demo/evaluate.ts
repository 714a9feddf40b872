// Held-out scores of the demo: exact-match accuracy of greedy answers and the mean
// log-probability of the ground-truth response (its tokens, EOS included).
import { type CausalLM, SpinCollator, type Tokenizer, noGrad } from "../index.js";
import { type AdditionExample, spinRow } from "./task.js";

export interface DemoScores {
  accuracy: number;
  meanLogprob: number;
}

export async function scoreModel(model: CausalLM, tokenizer: Tokenizer, examples: AdditionExample[], batchSize = 100): Promise<DemoScores> {
  let correct = 0;
  let logprob = 0;
  const collator = new SpinCollator({ tokenizer, maxLength: 64, maxPromptLength: 48 });
  for (let start = 0; start < examples.length; start += batchSize) {
    const chunk = examples.slice(start, start + batchSize);
    const prompts = chunk.map((e) => tokenizer.promptText([{ role: "user", content: e.prompt }]));
    const result = await model.generate(prompts, { tokenizer, maxNewTokens: 6, doSample: false, eosTokenIds: [tokenizer.eosTokenId!] });
    result.generations.forEach((g, i) => {
      if (g.text?.trim() === chunk[i]!.answer) correct++;
    });
    const batch = collator.collateSft(chunk.map(spinRow));
    const out = await noGrad(() => model.logprobs(batch.ids, batch.attentionMask, batch.labels));
    logprob += (out.sum.sum().item() as number);
    for (const t of [batch.ids, batch.attentionMask, batch.labels, out.sum, out.tokens, out.logitMean]) t.dispose();
  }
  return { accuracy: correct / examples.length, meanLogprob: logprob / examples.length };
}
