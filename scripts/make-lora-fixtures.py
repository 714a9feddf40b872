#!/usr/bin/env python3
# Reference fixtures for LoRA adapters, made by the real Hugging Face transformers + PEFT.
#
# Produces, for each model type in llama, mistral, qwen2, gpt2, the folder
# test/fixtures/peft-lora/<type>/ with:
#   model/          a tiny random float32 causal LM (config.json + model.safetensors), save_pretrained
#   adapter/        a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors):
#                   r=4, lora_alpha=8, target_modules="all-linear", every lora_A/lora_B filled with
#                   randn*0.1 (seed 1) so the adapter changes the outputs visibly
#   adapter-qv/     llama only: target_modules q_proj+v_proj, r=2, lora_alpha=16 (fill seed 2)
#   expected.json   versions, ids, attention_mask, base/lora/merged logits [2][7][64],
#                   lora_logprob_sums [2] (sum over t=3..6 of log_softmax(lora_logits[t-1])[ids[t]],
#                   float64), and lora_qv_logits for llama
# Row 1 is left-padded (mask [0,0,1,1,1,1,1]); position_ids = mask.cumsum(-1)-1 clamped at 0.
# Logits at padded positions are what transformers computes there (no masked query is special-cased);
# compare only positions where the mask is 1.
#
# Run (from the repository root; no network needed):
#   /tmp/peft-venv/bin/python scripts/make-lora-fixtures.py
# Check an adapter written by other software against this script's base model:
#   /tmp/peft-venv/bin/python scripts/make-lora-fixtures.py \
#       --check-adapter ADAPTER_DIR --type llama --logits LOGITS_JSON
#   (LOGITS_JSON holds {"logits": [2][7][64]}; prints the max |difference| to the logits of
#   PeftModel.from_pretrained(base, ADAPTER_DIR) and exits 1 if it exceeds 1e-5.)
#
# Versions used for the committed fixtures: torch 2.13.0+cpu, transformers 5.18.0, peft 0.21.0,
# safetensors 0.8.0, Python 3.11. The venv was made with:
#   python3 -m venv /tmp/peft-venv
#   /tmp/peft-venv/bin/pip install --index-url file:///opt/pypi/simple \
#       --extra-index-url file:///opt/pypi-more/simple --find-links /opt/wheels \
#       "torch==2.13.0+cpu" transformers peft safetensors numpy
# Running it twice gives byte-identical files.
import argparse
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import transformers  # noqa: E402
import peft  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    Qwen2Config,
)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "test" / "fixtures" / "peft-lora"
TYPES = ["llama", "mistral", "qwen2", "gpt2"]

IDS = [[5, 17, 42, 3, 60, 9, 33], [0, 0, 12, 7, 51, 2, 28]]
MASK = [[1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]]
RESPONSE = range(3, 7)  # response token positions for lora_logprob_sums


def make_config(kind):
    common = dict(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=32,
        vocab_size=64,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    if kind == "llama":
        return LlamaConfig(**common)
    if kind == "mistral":
        return MistralConfig(**common, sliding_window=4096)
    if kind == "qwen2":
        return Qwen2Config(**common)  # q/k/v biases by default
    if kind == "gpt2":
        # Tied input/output embeddings by design; n_inner None -> 4 * n_embd. bos/eos 63: inside
        # the vocabulary (the default 50256 is not).
        return GPT2Config(
            n_embd=16, n_layer=2, n_head=4, n_positions=64, vocab_size=64,
            bos_token_id=63, eos_token_id=63,
        )
    raise ValueError(kind)


def inputs():
    ids = torch.tensor(IDS, dtype=torch.long)
    mask = torch.tensor(MASK, dtype=torch.long)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    pos = pos.masked_fill(mask == 0, 0)
    return ids, mask, pos


@torch.no_grad()
def logits_of(model):
    model.eval()
    ids, mask, pos = inputs()
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
    return out.logits.detach().to(torch.float32)


def to_list(t):
    return [[[float(v) for v in row] for row in seq] for seq in t.tolist()]


def logprob_sums(logits):
    lp = torch.log_softmax(logits.to(torch.float64), dim=-1)
    ids = torch.tensor(IDS, dtype=torch.long)
    sums = []
    for b in range(ids.shape[0]):
        s = 0.0
        for t in RESPONSE:
            s += float(lp[b, t - 1, ids[b, t]])
        sums.append(s)
    return sums


def load_base(kind, folder):
    return AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, attn_implementation="eager"
    ).eval()


def fill_lora(model, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if ".lora_A." in name or ".lora_B." in name:
                p.copy_(torch.randn(p.shape, dtype=p.dtype) * 0.1)


def make_adapter(kind, model_dir, adapter_dir, target_modules, r, alpha, seed):
    base = load_base(kind, model_dir)
    cfg = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=0.0,
        target_modules=target_modules,
        init_lora_weights=False,
        task_type="CAUSAL_LM",
        bias="none",
    )
    torch.manual_seed(seed)
    pm = get_peft_model(base, cfg)
    fill_lora(pm, seed)
    pm.eval()
    # base_model_name_or_path null: not this machine's absolute path to model/.
    pm.peft_config["default"].base_model_name_or_path = None
    pm.base_model.model.name_or_path = ""
    # PEFT keeps target_modules as a set and writes it in hash order (differs per process):
    # write it sorted so the file is the same on every run. Same modules, same matching.
    tm = pm.peft_config["default"].target_modules
    if isinstance(tm, (set, frozenset, list, tuple)):
        pm.peft_config["default"].target_modules = sorted(tm)
    if adapter_dir.exists():
        shutil.rmtree(adapter_dir)
    pm.save_pretrained(str(adapter_dir), save_embedding_layers=False)
    readme = adapter_dir / "README.md"  # PEFT's model card template: not needed
    if readme.exists():
        readme.unlink()
    return pm


def make_type(kind):
    folder = OUT / kind
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    model_dir = folder / "model"

    torch.manual_seed(0)
    config = make_config(kind)
    model = AutoModelForCausalLM.from_config(
        config, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    model.save_pretrained(str(model_dir), safe_serialization=True)
    for extra in model_dir.iterdir():  # keep only config.json + model.safetensors
        if extra.name not in ("config.json", "model.safetensors"):
            extra.unlink()

    base_logits = logits_of(load_base(kind, model_dir))

    pm = make_adapter(kind, model_dir, folder / "adapter", "all-linear", 4, 8, 1)
    lora_logits = logits_of(pm)
    # Reload the saved adapter onto a fresh base: what other software sees must give these logits.
    reloaded = PeftModel.from_pretrained(load_base(kind, model_dir), str(folder / "adapter")).eval()
    reload_diff = (logits_of(reloaded) - lora_logits).abs().max().item()
    assert reload_diff == 0.0, f"{kind}: reloaded adapter differs by {reload_diff}"
    merged = pm.merge_and_unload()
    merged_logits = logits_of(merged)

    expected = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "ids": IDS,
        "attention_mask": MASK,
        "base_logits": to_list(base_logits),
        "lora_logits": to_list(lora_logits),
        "merged_logits": to_list(merged_logits),
        "lora_logprob_sums": logprob_sums(lora_logits),
    }
    if kind == "llama":
        qv = make_adapter(kind, model_dir, folder / "adapter-qv", ["q_proj", "v_proj"], 2, 16, 2)
        expected["lora_qv_logits"] = to_list(logits_of(qv))

    with open(folder / "expected.json", "w") as f:
        json.dump(expected, f, separators=(",", ":"))
        f.write("\n")

    print(
        f"{kind}: max|lora-base|={(lora_logits - base_logits).abs().max().item():.6g} "
        f"max|merged-lora|={(merged_logits - lora_logits).abs().max().item():.6g}"
    )


def check_adapter(adapter_dir, kind, logits_json):
    model_dir = OUT / kind / "model"
    pm = PeftModel.from_pretrained(load_base(kind, model_dir), str(adapter_dir)).eval()
    got = logits_of(pm)
    with open(logits_json) as f:
        want = torch.tensor(json.load(f)["logits"], dtype=torch.float64)
    if tuple(want.shape) != tuple(got.shape):
        print(f"shape mismatch: {tuple(want.shape)} vs {tuple(got.shape)}")
        return 2
    diff = (got.to(torch.float64) - want).abs().max().item()
    print(f"max abs diff: {diff:.6g}")
    return 0 if diff <= 1e-5 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check-adapter", metavar="ADAPTER_DIR")
    ap.add_argument("--type", choices=TYPES)
    ap.add_argument("--logits", metavar="LOGITS_JSON")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    if args.check_adapter:
        if not args.type or not args.logits:
            ap.error("--check-adapter needs --type and --logits")
        sys.exit(check_adapter(args.check_adapter, args.type, args.logits))
    for kind in TYPES:
        make_type(kind)


if __name__ == "__main__":
    main()
