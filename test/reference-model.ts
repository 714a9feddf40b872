// An independent float64 reference of the supported architectures, written from transformers'
// modeling code (modeling_llama / modeling_mistral / modeling_qwen2 / modeling_gpt2 and
// modeling_rope_utils), for ONE unpadded row at positions 0..T-1: naive attention, no cache.
// It uses only the library's basic float64 tensor ops (matmul, add, mul, exp, softmax, cat, …)
// and plain JS for the RoPE tables and masks; it never calls the decoder, parseModelConfig or
// any fused op (no layer_norm, gelu, silu). Weights come from the safetensors files through
// loadSafetensors (a file reader) as float64.
import { readFileSync } from "node:fs";
import path from "node:path";

import { type Tensor, cat, loadSafetensors, scope, tensor } from "../lib/index.js";

type Json = Record<string, unknown>;

interface RefConfig {
  gpt2: boolean;
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  eps: number;
  tied: boolean;
  /** inverse frequencies, float64 (llama family) */
  invFreq: number[];
  slidingWindow: number | null;
  /** layers from this index on use the sliding window (Qwen2's max_window_layers; 0 otherwise) */
  firstSlidingLayer: number;
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
}

const num = (v: unknown, fallback: number): number => (typeof v === "number" ? v : fallback);

/** transformers' _compute_default_rope_parameters + the linear / llama3 scalings, in float64. */
export function referenceInverseFrequencies(config: Json): number[] {
  const hidden = num(config.hidden_size, 4096);
  const heads = num(config.num_attention_heads, 32);
  const dim = num(config.head_dim, Math.floor(hidden / heads));
  const base = num(config.rope_theta, 10000);
  const inv: number[] = [];
  for (let i = 0; i < dim; i += 2) inv.push(1 / base ** (i / dim));
  const scaling = config.rope_scaling as Json | null | undefined;
  if (!scaling) return inv;
  const type = (scaling.rope_type ?? scaling.type) as string;
  const factor = scaling.factor as number;
  if (type === "linear") return inv.map((f) => f / factor);
  if (type === "llama3") {
    const low = scaling.low_freq_factor as number;
    const high = scaling.high_freq_factor as number;
    const old = scaling.original_max_position_embeddings as number;
    const lowWavelen = old / low;
    const highWavelen = old / high;
    return inv.map((f) => {
      const wavelen = (2 * Math.PI) / f;
      if (wavelen < highWavelen) return f; // high frequency: unchanged
      if (wavelen > lowWavelen) return f / factor; // low frequency: scaled
      const smooth = (old / wavelen - low) / (high - low);
      return (1 - smooth) * (f / factor) + smooth * f;
    });
  }
  if (type === "default") return inv;
  throw new Error(`reference: rope type ${type}`);
}

function readConfig(json: Json): RefConfig {
  const type = json.model_type as string;
  if (type === "gpt2") {
    const hidden = num(json.n_embd, 768);
    const heads = num(json.n_head, 12);
    return {
      gpt2: true,
      vocab: num(json.vocab_size, 50257),
      hidden,
      layers: num(json.n_layer, 12),
      heads,
      kvHeads: heads,
      headDim: hidden / heads,
      eps: num(json.layer_norm_epsilon, 1e-5),
      tied: json.tie_word_embeddings !== false,
      invFreq: [],
      slidingWindow: null,
      firstSlidingLayer: 0,
      qkvBias: true,
      oBias: true,
      mlpBias: true,
    };
  }
  if (type !== "llama" && type !== "mistral" && type !== "qwen2") throw new Error(`reference: model_type ${type}`);
  const hidden = num(json.hidden_size, 4096);
  const heads = num(json.num_attention_heads, 32);
  const attentionBias = json.attention_bias === true;
  let slidingWindow: number | null = null;
  if (type === "mistral") slidingWindow = json.sliding_window === null ? null : num(json.sliding_window, 4096);
  if (type === "qwen2" && json.use_sliding_window === true) slidingWindow = num(json.sliding_window, 4096);
  return {
    gpt2: false,
    vocab: num(json.vocab_size, 32000),
    hidden,
    layers: num(json.num_hidden_layers, 32),
    heads,
    kvHeads: num(json.num_key_value_heads, heads),
    headDim: num(json.head_dim, Math.floor(hidden / heads)),
    eps: num(json.rms_norm_eps, 1e-6),
    tied: json.tie_word_embeddings === true,
    invFreq: referenceInverseFrequencies(json),
    slidingWindow,
    // Qwen2: layer i slides iff i >= max_window_layers (transformers' layer_types / the
    // per-layer check in Qwen2Attention); Mistral: every layer.
    firstSlidingLayer: type === "qwen2" ? num(json.max_window_layers, 28) : 0,
    qkvBias: type === "qwen2" || attentionBias,
    oBias: type !== "qwen2" && attentionBias,
    mlpBias: json.mlp_bias === true,
  };
}

export class ReferenceModel implements Disposable {
  private constructor(
    readonly config: RefConfig,
    private readonly w: Map<string, Tensor>,
  ) {}

  /** Reads config.json and every safetensors file of `dir` (single file or shards) as float64. */
  static async load(dir: string): Promise<ReferenceModel> {
    const json = JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8")) as Json;
    const config = readConfig(json);
    let files: string[];
    try {
      const index = JSON.parse(readFileSync(path.join(dir, "model.safetensors.index.json"), "utf8")) as { weight_map: Record<string, string> };
      files = [...new Set(Object.values(index.weight_map))];
    } catch {
      files = ["model.safetensors"];
    }
    const w = new Map<string, Tensor>();
    for (const file of files) {
      for (const [name, t] of Object.entries(await loadSafetensors(path.join(dir, file), { dtype: "float64" }))) {
        // GPT-2 hub checkpoints: names without "transformer.", plus attention-mask buffers.
        if (config.gpt2 && /\.attn\.(masked_)?bias$/.test(name)) {
          t.dispose();
          continue;
        }
        const key = config.gpt2 && !name.startsWith("transformer.") && !name.startsWith("lm_head.") ? `transformer.${name}` : name;
        w.set(key, t);
      }
    }
    return new ReferenceModel(config, w);
  }

  private get(name: string): Tensor {
    const t = this.w.get(name);
    if (!t) throw new Error(`reference: no tensor ${name}`);
    return t;
  }

  /** Logits [T][vocab] in float64 for one unpadded row at positions 0..T-1. */
  logits(ids: number[]): number[][] {
    return scope(() => {
      const out = this.config.gpt2 ? this.gpt2(ids) : this.llama(ids);
      const flat = Array.from(out.toTypedArray() as Float64Array);
      const v = this.config.vocab;
      return ids.map((_, t) => flat.slice(t * v, (t + 1) * v));
    });
  }

  /** x @ W^T (+ b): torch.nn.Linear with weight [out, in]. */
  private linear(x: Tensor, weight: string, bias: string | null): Tensor {
    const y = x.matmul(this.get(weight).transpose(0, 1));
    return bias ? y.add(this.get(bias)) : y;
  }

  /** [T, T] additive mask: 0 where key k is visible from query q, -inf elsewhere. */
  private mask(T: number, window: number | null): Tensor {
    const m = new Float64Array(T * T);
    for (let q = 0; q < T; q++) {
      for (let k = 0; k < T; k++) {
        const visible = k <= q && (window === null || q - k < window);
        m[q * T + k] = visible ? 0 : -Infinity;
      }
    }
    return tensor(m, { shape: [T, T] });
  }

  /** softmax(q k^T · scale + mask) v for one head. */
  private head(q: Tensor, k: Tensor, v: Tensor, mask: Tensor): Tensor {
    const scores = q.matmul(k.transpose(0, 1)).mul(1 / Math.sqrt(this.config.headDim)).add(mask);
    return scores.softmax(-1).matmul(v);
  }

  private rmsNorm(x: Tensor, weight: string): Tensor {
    const variance = x.mul(x).mean(-1, true);
    return x.mul(variance.add(this.config.eps).sqrt().reciprocal()).mul(this.get(weight));
  }

  private layerNorm(x: Tensor, prefix: string): Tensor {
    const mean = x.mean(-1, true);
    const centred = x.sub(mean);
    const variance = centred.mul(centred).mean(-1, true); // biased, as torch.nn.LayerNorm
    return centred.div(variance.add(this.config.eps).sqrt()).mul(this.get(prefix + ".weight")).add(this.get(prefix + ".bias"));
  }

  /** cos / sin tables [T, d]: emb = cat(freqs, freqs) with freqs[t, i] = t · inv_freq[i]. */
  private rope(T: number): { cos: Tensor; sin: Tensor } {
    const d = this.config.headDim;
    const cos = new Float64Array(T * d);
    const sin = new Float64Array(T * d);
    for (let t = 0; t < T; t++) {
      this.config.invFreq.forEach((f, i) => {
        const angle = t * f;
        cos[t * d + i] = cos[t * d + i + d / 2] = Math.cos(angle);
        sin[t * d + i] = sin[t * d + i + d / 2] = Math.sin(angle);
      });
    }
    return { cos: tensor(cos, { shape: [T, d] }), sin: tensor(sin, { shape: [T, d] }) };
  }

  /** q·cos + rotate_half(q)·sin, rotate_half(x) = cat(−x[d/2:], x[:d/2]). */
  private applyRope(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
    const half = this.config.headDim / 2;
    const rotated = cat([x.slice(1, half, null).neg(), x.slice(1, 0, half)], 1);
    return x.mul(cos).add(rotated.mul(sin));
  }

  private llama(ids: number[]): Tensor {
    const c = this.config;
    const T = ids.length;
    const d = c.headDim;
    const fullMask = this.mask(T, null);
    const slidingMask = this.mask(T, c.slidingWindow);
    const { cos, sin } = this.rope(T);
    const embed = this.get("model.embed_tokens.weight");
    let h = embed.indexSelect(0, tensor(ids, { dtype: "int64" }));
    const groups = c.heads / c.kvHeads;
    for (let i = 0; i < c.layers; i++) {
      const p = `model.layers.${i}.`;
      const mask = i >= c.firstSlidingLayer ? slidingMask : fullMask;
      const x = this.rmsNorm(h, p + "input_layernorm.weight");
      const b = (name: string, on: boolean) => (on ? p + name + ".bias" : null);
      const q = this.linear(x, p + "self_attn.q_proj.weight", b("self_attn.q_proj", c.qkvBias));
      const k = this.linear(x, p + "self_attn.k_proj.weight", b("self_attn.k_proj", c.qkvBias));
      const v = this.linear(x, p + "self_attn.v_proj.weight", b("self_attn.v_proj", c.qkvBias));
      const heads: Tensor[] = [];
      for (let n = 0; n < c.heads; n++) {
        const kv = Math.floor(n / groups); // repeat_kv: query head n reads kv head n // n_rep
        const qh = this.applyRope(q.slice(1, n * d, (n + 1) * d), cos, sin);
        const kh = this.applyRope(k.slice(1, kv * d, (kv + 1) * d), cos, sin);
        heads.push(this.head(qh, kh, v.slice(1, kv * d, (kv + 1) * d), mask));
      }
      h = h.add(this.linear(cat(heads, 1), p + "self_attn.o_proj.weight", b("self_attn.o_proj", c.oBias)));
      const y = this.rmsNorm(h, p + "post_attention_layernorm.weight");
      const gate = this.linear(y, p + "mlp.gate_proj.weight", b("mlp.gate_proj", c.mlpBias));
      const up = this.linear(y, p + "mlp.up_proj.weight", b("mlp.up_proj", c.mlpBias));
      const silu = gate.div(gate.neg().exp().add(1)); // x · σ(x)
      h = h.add(this.linear(silu.mul(up), p + "mlp.down_proj.weight", b("mlp.down_proj", c.mlpBias)));
    }
    h = this.rmsNorm(h, "model.norm.weight");
    return h.matmul((c.tied ? embed : this.get("lm_head.weight")).transpose(0, 1));
  }

  private gpt2(ids: number[]): Tensor {
    const c = this.config;
    const T = ids.length;
    const d = c.headDim;
    const H = c.hidden;
    const mask = this.mask(T, null);
    const wte = this.get("transformer.wte.weight");
    let h = wte.indexSelect(0, tensor(ids, { dtype: "int64" })).add(this.get("transformer.wpe.weight").slice(0, 0, T));
    for (let i = 0; i < c.layers; i++) {
      const p = `transformer.h.${i}.`;
      // Conv1D: y = x @ W + b with W stored [in, out].
      const conv = (x: Tensor, name: string) => x.matmul(this.get(p + name + ".weight")).add(this.get(p + name + ".bias"));
      const qkv = conv(this.layerNorm(h, p + "ln_1"), "attn.c_attn");
      const q = qkv.slice(1, 0, H);
      const k = qkv.slice(1, H, 2 * H);
      const v = qkv.slice(1, 2 * H, 3 * H);
      const heads: Tensor[] = [];
      for (let n = 0; n < c.heads; n++) {
        const s = (x: Tensor) => x.slice(1, n * d, (n + 1) * d);
        heads.push(this.head(s(q), s(k), s(v), mask));
      }
      h = h.add(conv(cat(heads, 1), "attn.c_proj"));
      const m = conv(this.layerNorm(h, p + "ln_2"), "mlp.c_fc");
      // gelu_new: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
      const inner = m.add(m.mul(m).mul(m).mul(0.044715)).mul(Math.sqrt(2 / Math.PI));
      const gelu = m.mul(0.5).mul(inner.tanh().add(1));
      h = h.add(conv(gelu, "mlp.c_proj"));
    }
    h = this.layerNorm(h, "transformer.ln_f");
    return h.matmul((c.tied ? wte : this.get("lm_head.weight")).transpose(0, 1));
  }

  dispose(): void {
    for (const t of this.w.values()) t.dispose();
    this.w.clear();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** log_softmax of one row of logits, in float64. */
export function logSoftmaxRow(row: number[]): number[] {
  const max = Math.max(...row);
  const lse = max + Math.log(row.reduce((acc, v) => acc + Math.exp(v - max), 0));
  return row.map((v) => v - lse);
}
