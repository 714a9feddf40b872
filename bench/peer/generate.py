# Self-play generation on realistic prompt lengths with Hugging Face transformers, as the
# original's generate.py runs it: batches of 16 left-padded prompts through model.generate,
# sampled at temperature 1 (no top-k or top-p), at most 256 new tokens, 2% of the vocabulary
# (ids 3..) as EOS ids (the prompts, sampling and stop rule of bench/generate-realistic.ts;
# the draws differ, the length distribution is the same). Prints one JSON line.
# Usage: python bench/peer/generate.py <checkpoint dir> [--prompts=N]
import json
import resource
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM

from spin_step import realistic_pairs

BATCH, MAX_NEW_TOKENS, EOS_SHARE = 16, 256, 0.02


def main():
    directory = sys.argv[1]
    count = int(next((a[10:] for a in sys.argv[2:] if a.startswith("--prompts=")), "512"))
    model = AutoModelForCausalLM.from_pretrained(directory, torch_dtype=torch.float32, attn_implementation="sdpa")
    model.eval()
    vocab = model.config.vocab_size
    prompts = [p for p, _, _ in realistic_pairs(vocab, count)]
    eos = list(range(3, 3 + round(vocab * EOS_SHARE)))
    torch.manual_seed(0)
    start = time.perf_counter()
    new_tokens = 0
    with torch.inference_mode():
        for b in range(0, len(prompts), BATCH):
            batch = prompts[b : b + BATCH]
            width = max(len(p) for p in batch)
            ids = torch.zeros(len(batch), width, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, p in enumerate(batch):
                ids[i, width - len(p):] = torch.tensor(p)
                mask[i, width - len(p):] = 1
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=MAX_NEW_TOKENS, do_sample=True,
                                 temperature=1.0, top_k=0, top_p=1.0,
                                 eos_token_id=eos, pad_token_id=0)
            for row in out[:, width:].tolist():
                ended = next((i for i, t in enumerate(row) if t in eos), None)
                new_tokens += len(row) if ended is None else ended + 1
    print(json.dumps({
        "name": f"transformers {transformers.__version__} generate, batches of {BATCH}",
        "torch": torch.__version__,
        "prompts": count,
        "seconds": time.perf_counter() - start,
        "newTokens": new_tokens,
        "peakRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }))


if __name__ == "__main__":
    main()
