# The realistic-length SPIN step (bench/realistic.ts) with Hugging Face transformers, as the
# original's TRL trainer runs it: each micro-batch's [real; generated] rows right-padded to the
# longest, one forward of the padded batch (SDPA attention, transformers' default), full-vocabulary
# log-softmax, summed response log-probs, sigmoid loss against precomputed opponent log-probs,
# backward scaled by 1/accumulation, clip 1.0, RMSprop. Prints one JSON line.
# Usage: python bench/peer/spin_step.py <checkpoint dir> [--repeats=N]
import json
import resource
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM

PAIRS, PER, PROMPT, RESPONSE, SEED = 64, 8, (32, 512), (16, 512), 20261207


def uniforms(seed):
    state = seed & 0xFFFFFFFF
    while True:
        state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
        yield state / 2**32


def realistic_pairs(vocab, count=PAIRS):
    u = uniforms(SEED)
    length = lambda lo_hi: lo_hi[0] + int((lo_hi[1] - lo_hi[0] + 1) * next(u) ** 2)
    ids = lambda n: [3 + int((vocab - 3) * next(u)) for _ in range(n)]
    pairs = []
    for _ in range(count):
        p, r, g = length(PROMPT), length(RESPONSE), length(RESPONSE)
        pairs.append((ids(p), ids(r), ids(g)))
    return pairs


def collate(pairs):
    rows = [(p, r) for p, r, _ in pairs] + [(p, g) for p, _, g in pairs]
    width = max(len(p) + len(r) for p, r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, (p, r) in enumerate(rows):
        n = len(p) + len(r)
        ids[i, :n] = torch.tensor(p + r)
        mask[i, :n] = 1
        labels[i, len(p):n] = torch.tensor(r)
    return ids, mask, labels


def main():
    directory = sys.argv[1]
    repeats = int(next((a[10:] for a in sys.argv[2:] if a.startswith("--repeats=")), "1"))
    model = AutoModelForCausalLM.from_pretrained(directory, torch_dtype=torch.float32, attn_implementation="sdpa")
    model.train()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-7)
    pairs = realistic_pairs(model.config.vocab_size)
    batches = [collate(pairs[i : i + PER]) for i in range(0, len(pairs), PER)]
    opponent = torch.full((PER,), -300.0)

    def step():
        for ids, mask, labels in batches:
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
            targets = labels[:, 1:]
            keep = targets != -100
            token_logps = logits.log_softmax(-1).gather(2, targets.clamp_min(0).unsqueeze(2)).squeeze(2)
            logps = (token_logps * keep).sum(-1)
            half = ids.shape[0] // 2
            margin = (logps[:half] - opponent) - (logps[half:] - opponent)
            loss = -torch.nn.functional.logsigmoid(0.1 * margin).mean()
            (loss / len(batches)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)

    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    seconds.sort()
    print(json.dumps({
        "name": f"transformers {transformers.__version__}, sdpa",
        "torch": torch.__version__,
        "seconds": seconds[len(seconds) // 2],
        "peakRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }))


if __name__ == "__main__":
    main()
