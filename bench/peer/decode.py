# The `generate` workload (bench/model-bench.ts, generateRows) with Hugging Face transformers:
# 64-token prompts (the same ids), exactly 128 new tokens (no EOS), greedy or sampled at
# temperature 1 with top-p 0.9 (top-k off); one warm-up call, then one timed call. The time per
# decode step is the timed call's time less a 1-token call's (the prefill), over 127 steps.
# Prints one JSON line. Usage: python bench/peer/decode.py <checkpoint dir> --batch=N [--sample]
import json
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM

PROMPT, NEW_TOKENS = 64, 128


def main():
    directory = sys.argv[1]
    batch = int(next(a[8:] for a in sys.argv[2:] if a.startswith("--batch=")))
    sample = "--sample" in sys.argv[2:]
    model = AutoModelForCausalLM.from_pretrained(directory, torch_dtype=torch.float32, attn_implementation="sdpa").eval()
    vocab = model.config.vocab_size
    ids = torch.tensor([[((r * 131 + i * 17) % (vocab - 3)) + 3 for i in range(PROMPT)] for r in range(batch)])
    sampling = dict(do_sample=True, temperature=1.0, top_k=0, top_p=0.9) if sample else dict(do_sample=False)

    def generate(new_tokens):
        torch.manual_seed(0)
        start = time.perf_counter()
        with torch.inference_mode():
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                           eos_token_id=None, pad_token_id=0, **sampling)
        return time.perf_counter() - start

    generate(NEW_TOKENS)  # warm-up
    seconds = generate(NEW_TOKENS)
    prefill = min(generate(1) for _ in range(3))
    print(json.dumps({
        "name": f"transformers {transformers.__version__} generate b={batch}{' sample top-p 0.9' if sample else ' greedy'}",
        "torch": torch.__version__,
        "msPerStep": (seconds - prefill) / (NEW_TOKENS - 1) * 1000,
    }))


if __name__ == "__main__":
    main()
