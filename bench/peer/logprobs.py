# Summed response log-probs without grad with Hugging Face transformers, as TRL computes them
# (bench/model-bench.ts, logprobsRows): one forward of the batch (SDPA attention), a
# full-vocabulary log-softmax of the shifted logits, the labels' entries gathered and summed
# over the response (the second half of each row). Prints one JSON line: the median seconds.
# Usage: python bench/peer/logprobs.py <checkpoint dir> [--rows=8] [--tokens=512] [--repeats=N]
import json
import statistics
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM


def option(name, default):
    return int(next((a.split("=", 1)[1] for a in sys.argv[2:] if a.startswith(f"--{name}=")), default))


def main():
    directory = sys.argv[1]
    rows, tokens = option("rows", 8), option("tokens", 512)
    repeats = option("repeats", 20 if tokens <= 128 else 5)
    model = AutoModelForCausalLM.from_pretrained(directory, torch_dtype=torch.float32, attn_implementation="sdpa").eval()
    ids = torch.randint(3, model.config.vocab_size, (rows, tokens), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    labels = ids.clone()
    labels[:, : tokens // 2] = -100

    def logprobs():
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
            target = labels[:, 1:]
            keep = target != -100
            picked = logits.log_softmax(-1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            return (picked * keep).sum(-1)

    logprobs()  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        logprobs()
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"name": f"transformers {transformers.__version__} logprobs {rows}x{tokens}", "torch": torch.__version__, "seconds": statistics.median(seconds)}))


if __name__ == "__main__":
    main()
