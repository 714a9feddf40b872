// A tiny character-level tokenizer (BPE without merges: one token per character) for trainer
// tests, built with Tokenizer.fromJSON as in collator.test.ts. Its 35 ids fit the 64-token
// vocabulary of the fixtures in fixtures.ts, so a fixture model can train on its output.
// No chat_template in its config: the Zephyr default template applies, i.e.
//   prompt   "<|system|>\n</s>\n<|user|>\n{x}</s>\n<|assistant|>\n"   (10 + |x| tokens)
//   response "{y}</s>\n" + one appended EOS                            (|y| + 3 tokens)
import type { ChatMessage, SpinRow } from "../lib/data/rows.js";
import { Tokenizer } from "../lib/model/tokenizer.js";

/** Ids: 0 <unk>, 1 </s>, 2 <pad>, 3 <|system|>, 4 <|user|>, 5 <|assistant|>, 6 "\n", 7..32 "a".."z", 33 " ", 34 "?". */
export const TINY_IDS = { unk: 0, eos: 1, pad: 2, system: 3, user: 4, assistant: 5, newline: 6 } as const;
export const TINY_VOCAB_SIZE = 35;

/** tokenizer.json of the tiny tokenizer. */
export function tinyTokenizerJson(): object {
  const specials = ["<unk>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"];
  const vocab: Record<string, number> = {};
  specials.forEach((t, id) => (vocab[t] = id));
  [..."\nabcdefghijklmnopqrstuvwxyz ?"].forEach((ch, idx) => (vocab[ch] = 6 + idx));
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: specials.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: id < 3,
    })),
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: { type: "Fuse" },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<unk>",
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: [],
    },
  };
}

/** tokenizer_config.json of the tiny tokenizer (eos "</s>", pad "<pad>"). */
export const TINY_TOKENIZER_CONFIG = { eos_token: "</s>", unk_token: "<unk>", pad_token: "<pad>" } as const;

export function tinyTokenizer(): Tokenizer {
  return Tokenizer.fromJSON(tinyTokenizerJson(), { ...TINY_TOKENIZER_CONFIG });
}

export const user = (content: string): ChatMessage => ({ role: "user", content });
export const assistant = (content: string): ChatMessage => ({ role: "assistant", content });

/** A SPIN pair: prompt x, real response, generated response. */
export function pairOf(x: string, real: string, generated: string): SpinRow {
  return { real: [user(x), assistant(real)], generated: [user(x), assistant(generated)] };
}

/** Token ids of a lower-case text (letters, space, "?"), as the tiny tokenizer encodes it. */
export function charIds(text: string): number[] {
  return [...text].map((ch) => {
    if (ch === " ") return 33;
    if (ch === "?") return 34;
    if (ch === "\n") return 6;
    const code = ch.charCodeAt(0) - "a".charCodeAt(0);
    if (code < 0 || code >= 26) throw new Error(`charIds: '${ch}' is not in the tiny vocabulary`);
    return 7 + code;
  });
}

/** The prompt ids of a one-turn prompt x: "<|system|>\n</s>\n<|user|>\n{x}</s>\n<|assistant|>\n". */
export function promptIdsOf(x: string): number[] {
  const { system, newline, eos, user: u, assistant: a } = TINY_IDS;
  return [system, newline, eos, newline, u, newline, ...charIds(x), eos, newline, a, newline];
}

/** The response ids of y: "{y}</s>\n" plus the appended EOS. */
export function responseIdsOf(y: string): number[] {
  return [...charIds(y), TINY_IDS.eos, TINY_IDS.newline, TINY_IDS.eos];
}
