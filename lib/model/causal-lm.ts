// CausalLM: a Hugging Face causal LM folder (config.json, safetensors, tokenizer files)
// loaded into the native decoder, and saved back as a folder transformers can load.
import { copyFile, readFile } from "node:fs/promises";
import path from "node:path";

import type { AttentionKernel, NativeKVCache, NativeModel } from "../core/native-types.js";
import type { DType } from "../core/dtype.js";
import { type GenerateOptions, type GenerateResult, type StreamedToken, generate, streamGenerate } from "./generation.js";
import { SpinNativeError } from "../core/errors.js";
import { writeDirAtomic, writeFileAtomic } from "../core/atomic.js";
import { type ModelConfig, parseModelConfig } from "./config.js";
import { ModelUsage } from "./usage.js";
import { native } from "../core/native.js";
import { type SaveCheckpointOptions, loadCheckpointTensors, saveCheckpointTensors } from "./safetensors.js";
import { Tensor } from "../core/tensor.js";
import { TOKENIZER_FILES } from "./tokenizer.js";
import { type LoraConfig, type LoraOptions, adapterDtype, handlesOf, initialAdapterTensors, loraScale, readAdapter, resolveLoraOptions, writeAdapter } from "./lora.js";

export interface LoadModelOptions {
  /** Device for the parameters (default "cpu"). */
  device?: string;
  /** Parameter dtype (default float32; the checkpoint's torch_dtype is converted). */
  dtype?: DType;
  /**
   * Memory-map the weights instead of copying them into memory the process owns (default
   * false): a faster load, for read-only checkpoints only. Parameters left in the file's dtype
   * on CPU then read the file itself: rewriting it in place changes the live model, and
   * truncating it crashes the process (SIGBUS) at its next forward pass.
   */
  mmap?: boolean;
  /** How attention is computed (see {@link CausalLM.attention}); default "sdpa" where this libtorch has it (≥ 2), else "eager". */
  attention?: AttentionKernel;
  /**
   * A PEFT LoRA adapter folder to attach once loaded ({@link CausalLM.loadAdapter}): the base
   * is frozen and the adapter trainable (PEFT's `PeftModel.from_pretrained` with `is_trainable=True`).
   */
  adapter?: string;
  /** A fresh LoRA adapter to attach once loaded ({@link CausalLM.addAdapter}, as PEFT's `get_peft_model`): the base is frozen. Not with `adapter`. */
  lora?: LoraOptions;
}

/** Options of {@link CausalLM.logprobs}. */
export interface LogprobsOptions {
  /** Recompute each layer in backward instead of keeping its activations. */
  checkpoint?: boolean;
  /**
   * Run the rows without padding, packed end to end, with row i and row i + N/2 (the
   * [real; generated] layout of a SPIN batch) running their common prefix once (default true).
   * A batch that packing would not shorten (no padding, no shared prefix) runs padded anyway.
   * false: the padded batch as given. The two agree within float32 rounding.
   */
  packing?: boolean;
}

export interface ForwardOptions {
  /** [B, T] int64 positions; by default derived from the mask (left padding aware). */
  positions?: Tensor;
  /** [B, K] positions whose logits are wanted: the vocabulary projection runs only there. */
  logitsAt?: Tensor;
  /** Append to and attend over this cache (incremental decoding). */
  cache?: KVCache;
  /** Recompute each layer in backward instead of keeping its activations. */
  checkpoint?: boolean;
}

/** Summed response log-probs per row (labels −100 are ignored), from float32 log-softmax. */
export interface ResponseLogprobs {
  /** [N] float32: Σ log p(label) over each row's response tokens. */
  sum: Tensor;
  /** [N] int64: response tokens per row. */
  tokens: Tensor;
  /** [N] float32: Σ over response tokens of the mean logit (metrics' logits/*). */
  logitMean: Tensor;
}

/** A preallocated key/value cache for incremental decoding ({@link CausalLM.newCache}). */
export class KVCache implements Disposable {
  /** @internal */
  constructor(readonly handle: NativeKVCache) {}
  /** Slots filled so far. */
  get length(): number {
    return this.handle.length;
  }
  get capacity(): number {
    return this.handle.capacity;
  }
  /** Empties the cache for reuse (no reallocation). */
  reset(): void {
    this.handle.reset();
  }
  dispose(): void {
    this.handle.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

async function readJson(file: string, required: boolean): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if (!required && (error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new SpinNativeError(`cannot read ${file}: ${(error as Error).message}`, "IO", "CausalLM.load");
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new SpinNativeError(`${file} is not valid JSON: ${(error as Error).message}`, "INVALID_ARGUMENT", "CausalLM.load");
  }
}

/** GPT-2 checkpoints from the hub name tensors without the "transformer." prefix and carry mask buffers. */
function normaliseNames(config: ModelConfig, tensors: Record<string, Tensor>): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [name, tensor] of Object.entries(tensors)) {
    let key = name;
    if (config.architecture === "gpt2") {
      if (/\.attn\.(masked_)?bias$/.test(key)) {
        tensor.dispose();
        continue;
      }
      if (!key.startsWith("transformer.") && !key.startsWith("lm_head.")) key = `transformer.${key}`;
    }
    if (config.tieWordEmbeddings && key === "lm_head.weight") {
      tensor.dispose(); // tied: the embedding matrix is the head
      continue;
    }
    out[key] = tensor;
  }
  return out;
}

/** A causal language model in native code: Llama, Mistral, Qwen2 or GPT-2, with Hugging Face weight names. */
export class CausalLM implements Disposable {
  /** @internal Who is using the parameters (lib/model/usage.ts): conflicting calls are refused. */
  readonly usage = new ModelUsage();
  #adapter: LoraConfig | null = null;

  private constructor(
    private readonly native: NativeModel,
    /** Normalised architecture settings. */
    readonly config: ModelConfig,
    /** The checkpoint's config.json as read (written back on save). */
    readonly hfConfig: Record<string, unknown>,
    /** generation_config.json, when the checkpoint has one. */
    readonly generationConfig: Record<string, unknown> | null,
    /** The folder it was loaded from (tokenizer files are copied from there on save). */
    readonly sourceDir: string | null,
    readonly dtype: DType,
    readonly device: string,
  ) {}

  /**
   * Loads a Hugging Face model folder (config.json + model.safetensors or a sharded index),
   * with a LoRA adapter attached when `options.adapter` or `options.lora` asks for one. A model
   * whose adapter fails to attach is freed before the error is thrown.
   *
   * @throws SpinNativeError naming the file, key or tensor; `INVALID_ARGUMENT` for both
   *   `adapter` and `lora`, and the errors of {@link CausalLM.loadAdapter} and {@link CausalLM.addAdapter}.
   */
  static async load(dir: string, options: LoadModelOptions = {}): Promise<CausalLM> {
    if (options.adapter !== undefined && options.lora !== undefined) {
      throw new SpinNativeError("CausalLM.load: give adapter (a folder to load) or lora (a fresh adapter), not both", "INVALID_ARGUMENT", "CausalLM.load");
    }
    if (options.adapter !== undefined && (typeof options.adapter !== "string" || options.adapter === "")) {
      throw new SpinNativeError(`CausalLM.load: adapter must be a folder path, got ${JSON.stringify(options.adapter)}`, "INVALID_ARGUMENT", "CausalLM.load");
    }
    const configPath = path.join(dir, "config.json");
    const hfConfig = (await readJson(configPath, true)) as Record<string, unknown>;
    const config = parseModelConfig(hfConfig, configPath);
    const generationConfig = (await readJson(path.join(dir, "generation_config.json"), false)) as Record<string, unknown> | null;
    const dtype = options.dtype ?? "float32";
    const device = options.device ?? "cpu";
    const tensors = normaliseNames(config, await loadCheckpointTensors(dir, { dtype, device, mmap: options.mmap ?? false }));
    const model = CausalLM.fromTensors(config, tensors, { hfConfig, generationConfig, sourceDir: dir, dtype, device });
    try {
      if (options.attention !== undefined) model.attention = options.attention;
      if (options.adapter !== undefined) await model.loadAdapter(options.adapter);
      else if (options.lora !== undefined) model.addAdapter(options.lora);
    } catch (e) {
      model.dispose();
      throw e;
    }
    return model;
  }

  /** @internal Builds a model over named tensors (shared, not copied). */
  static fromTensors(
    config: ModelConfig,
    tensors: Record<string, Tensor>,
    extra: { hfConfig: Record<string, unknown>; generationConfig?: Record<string, unknown> | null; sourceDir?: string | null; dtype: DType; device: string },
  ): CausalLM {
    const handles = Object.fromEntries(Object.entries(tensors).map(([n, t]) => [n, Tensor.handleOf(t)]));
    try {
      const model = native.createModel(config, handles);
      return new CausalLM(model, config, extra.hfConfig, extra.generationConfig ?? null, extra.sourceDir ?? null, extra.dtype, extra.device);
    } finally {
      for (const t of Object.values(tensors)) t.dispose(); // the model holds its own references
    }
  }

  /**
   * How attention is computed: "sdpa" calls libtorch's fused scaled_dot_product_attention
   * (transformers' default; libtorch ≥ 2, the default there), "eager" forms the scores and a
   * float32 softmax explicitly (transformers' "eager", the reference). They agree within float32
   * rounding; 16-bit CPU models and bf16 autocast use eager either way.
   *
   * @throws SpinNativeError `INVALID_ARGUMENT` for another value, or "sdpa" on libtorch 1.x;
   *   `BUSY` while a call uses the model.
   */
  get attention(): AttentionKernel {
    return this.native.attention();
  }

  set attention(kernel: AttentionKernel) {
    this.usage.assertIdle("model.attention");
    this.native.setAttention(kernel);
  }

  /** @internal The native decoder handle (for lib/ only). */
  get nativeHandle(): NativeModel {
    return this.native;
  }

  /** Logits [B, T, vocab] (or [B, K, vocab] with `logitsAt`). */
  forward(ids: Tensor, attentionMask: Tensor, options: ForwardOptions = {}): Tensor {
    return this.usage.readSync("model.forward", () => new Tensor(this.native.forward(...this.#forwardArgs(ids, attentionMask, options))));
  }

  /** {@link forward} on a worker thread. */
  async forwardAsync(ids: Tensor, attentionMask: Tensor, options: ForwardOptions = {}): Promise<Tensor> {
    const args = this.#forwardArgs(ids, attentionMask, options);
    return new Tensor(await this.usage.read("model.forwardAsync", () => this.native.forwardAsync(...args)));
  }

  #forwardArgs(ids: Tensor, attentionMask: Tensor, o: ForwardOptions) {
    const call = "model.forward";
    return [
      Tensor.handleOf(ids, call, "ids"),
      Tensor.handleOf(attentionMask, call, "attentionMask"),
      o.positions ? Tensor.handleOf(o.positions, call, "positions") : null,
      o.logitsAt ? Tensor.handleOf(o.logitsAt, call, "logitsAt") : null,
      o.cache ? o.cache.handle : null,
      o.checkpoint ?? false,
    ] as const;
  }

  /**
   * Per-row sums of next-token log-probs over response tokens: a row's token t is scored on
   * its label from the tokens before it; −100 marks prompt and padding (a label on a padding
   * slot is an error). Runs off the event loop.
   */
  async logprobs(ids: Tensor, attentionMask: Tensor, labels: Tensor, options: LogprobsOptions = {}): Promise<ResponseLogprobs> {
    const call = "model.logprobs";
    const args = [
      Tensor.handleOf(ids, call, "ids"),
      Tensor.handleOf(attentionMask, call, "attentionMask"),
      Tensor.handleOf(labels, call, "labels"),
      options.checkpoint ?? false,
      options.packing ?? true,
    ] as const;
    const out = await this.usage.read(call, () => this.native.logprobs(...args));
    return { sum: new Tensor(out.sum), tokens: new Tensor(out.tokens), logitMean: new Tensor(out.logitMean) };
  }

  /**
   * Generates continuations of `prompts` (text with `options.tokenizer`, or token ids) in one
   * left-padded batch, the whole decode loop in native code. Defaults come from
   * generation_config.json.
   */
  generate(prompts: (string | number[])[], options: GenerateOptions = {}): Promise<GenerateResult> {
    return this.usage.read("model.generate", () => generate(this, prompts, options));
  }

  /** {@link generate} as a stream of tokens (row, token) as they are produced. */
  generateStream(prompts: (string | number[])[], options: GenerateOptions = {}): AsyncGenerator<StreamedToken, GenerateResult> {
    const usage = this.usage;
    const model = this;
    // The read starts at the first next() and ends with the stream (also when it is returned early).
    return (async function* () {
      const end = usage.beginRead("model.generateStream");
      try {
        return yield* streamGenerate(model, prompts, options);
      } finally {
        end();
      }
    })();
  }

  /** The parameters by Hugging Face name: live tensors (in-place updates change the model). Dispose the handles when done. */
  parameters(): Map<string, Tensor> {
    return new Map(Object.entries(this.native.parameters()).map(([n, h]) => [n, new Tensor(h)]));
  }

  /** The projections a LoRA adapter can target, by HF module name, with their in/out features. */
  linearModules(): { name: string; in: number; out: number }[] {
    return this.native.linearModules();
  }

  /** The attached LoRA adapter's settings, or null. */
  get adapter(): LoraConfig | null {
    return this.#adapter;
  }

  /**
   * Attaches a fresh LoRA adapter (A Kaiming-uniform, B zero: the outputs are unchanged) and
   * freezes the base weights: from now on training updates only the adapter (float32 over a
   * 16-bit base, as PEFT; the base's dtype otherwise).
   *
   * @throws SpinNativeError INVALID_ARGUMENT naming the option; a target that matches no
   *   module lists the model's linear modules; an adapter already attached.
   */
  addAdapter(options: LoraOptions = {}): LoraConfig {
    const call = "model.addAdapter";
    this.#noAdapter(call);
    const config = resolveLoraOptions(options, this.config.modelType, this.#moduleNames(), call);
    const tensors = initialAdapterTensors(this.native, config, adapterDtype(this.dtype), this.device);
    this.#attach(call, { r: config.r, alpha: config.alpha, dropout: config.dropout, targetModules: config.targetModules, useRslora: config.useRslora, modules: config.modules }, tensors);
    return this.#adapter!;
  }

  /**
   * Attaches a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors), as
   * `PeftModel.from_pretrained` would.
   *
   * @throws SpinNativeError naming the file, key or tensor: a tensor that names no module of
   *   this model or does not fit its shape, a setting other than plain LoRA.
   */
  async loadAdapter(dir: string): Promise<LoraConfig> {
    const call = "model.loadAdapter";
    this.#noAdapter(call);
    const { config, tensors } = await readAdapter(dir, this.config.modelType, this.#moduleNames(), adapterDtype(this.dtype), this.device);
    this.#attach(call, config, tensors);
    return config;
  }

  /**
   * Writes the attached adapter as a PEFT folder (loads with `PeftModel.from_pretrained`);
   * `tensors` replace the adapter's own (a ZeRO stage-3 run's gathered ones, as for `save`).
   */
  async saveAdapter(dir: string, tensors?: Record<string, Tensor>): Promise<void> {
    const call = "model.saveAdapter";
    const config = this.#requireAdapter(call);
    await this.usage.read(call, async () => {
      if (tensors) return writeAdapter(dir, config, tensors, this.sourceDir);
      const own = this.adapterTensors()!;
      try {
        await writeAdapter(dir, config, own, this.sourceDir);
      } finally {
        for (const t of Object.values(own)) t.dispose();
      }
    });
  }

  /** The adapter's tensors by name ("<module>.lora_A.weight", …), live; null without an adapter. Dispose the handles. */
  adapterTensors(): Record<string, Tensor> | null {
    const handles = this.native.adapterTensors();
    return handles === null ? null : Object.fromEntries(Object.entries(handles).map(([name, h]) => [name, new Tensor(h)]));
  }

  /** Folds the adapter into the base weights (W += s·B·A, as PEFT's merge_and_unload) and detaches it. */
  mergeAdapter(): void {
    const call = "model.mergeAdapter";
    this.#requireAdapter(call);
    this.usage.assertIdle(call);
    this.native.mergeAdapter();
    this.#adapter = null;
  }

  /** Detaches the adapter; the base weights stay frozen (an optimizer made later trains them again). */
  removeAdapter(): void {
    const call = "model.removeAdapter";
    this.#requireAdapter(call);
    this.usage.assertIdle(call);
    this.native.setAdapter(null);
    this.#adapter = null;
  }

  #moduleNames(): string[] {
    return this.native.linearModules().map((m) => m.name);
  }

  #noAdapter(call: string): void {
    if (this.#adapter) throw new SpinNativeError(`${call}: the model already has an adapter; merge or remove it first`, "INVALID_ARGUMENT", call);
    this.usage.assertIdle(call);
  }

  #requireAdapter(call: string): LoraConfig {
    if (!this.#adapter) throw new SpinNativeError(`${call}: the model has no adapter`, "INVALID_ARGUMENT", call);
    return this.#adapter;
  }

  #attach(call: string, config: LoraConfig, tensors: Record<string, Tensor>): void {
    try {
      this.native.setAdapter({ scale: loraScale(config), dropout: config.dropout, tensors: handlesOf(tensors) });
    } catch (error) {
      if (error instanceof SpinNativeError) throw new SpinNativeError(`${call}: ${error.message.replace(/^model\.setAdapter: /, "")}`, error.code, call);
      throw error;
    } finally {
      for (const t of Object.values(tensors)) t.dispose(); // the model holds its own references
    }
    this.#adapter = config;
  }

  /** A KV cache for `batch` rows and up to `capacity` positions. */
  newCache(batch: number, capacity: number): KVCache {
    return new KVCache(this.native.newCache(batch, capacity));
  }

  /**
   * Writes a complete Hugging Face folder, atomically: config.json, generation_config.json,
   * safetensors (sharded with an index above `maxShardBytes`), and the tokenizer files of the
   * folder it was loaded from. With an adapter attached the weights are written merged
   * (W + s·B·A; the model itself is unchanged): a plain model any HF loader reads.
   *
   * `weights` writes those tensors, one per parameter name, instead of the model's own: a
   * ZeRO stage-3 run's rank 0 saves what it gathered layer by layer (`Optimizer.gatheredWeights`)
   * while the layers themselves stay sharded. Not with an adapter attached.
   */
  async save(dir: string, options: SaveCheckpointOptions & { dtype?: DType; weights?: Record<string, Tensor> } = {}): Promise<void> {
    const dtype = options.dtype ?? this.dtype;
    await this.usage.read("model.save", () => this.#save(dir, dtype, options));
  }

  async #save(dir: string, dtype: DType, options: SaveCheckpointOptions & { weights?: Record<string, Tensor> }): Promise<void> {
    const given = options.weights;
    if (given) {
      if (this.#adapter) throw new SpinNativeError("model.save: weights cannot be given with an adapter attached (save the adapter)", "INVALID_ARGUMENT", "model.save");
    }
    await writeDirAtomic(dir, async (temp) => {
      const parameters: Map<string, Tensor> = given ? new Map(Object.entries(given)) : this.parameters();
      if (this.#adapter) {
        for (const [name, merged] of Object.entries(this.native.mergedWeights())) {
          parameters.get(name)!.dispose();
          parameters.set(name, new Tensor(merged));
        }
      }
      const tensors: Record<string, Tensor> = {};
      for (const [name, t] of parameters) tensors[name] = t.dtype === dtype && t.device === "cpu" ? t : t.to({ device: "cpu", dtype });
      try {
        await saveCheckpointTensors(temp, tensors, options);
      } finally {
        // The caller's weights stay theirs.
        const theirs = new Set(given ? Object.values(given) : []);
        for (const t of new Set([...parameters.values(), ...Object.values(tensors)])) if (!theirs.has(t)) t.dispose();
      }
      const config = { ...this.hfConfig, torch_dtype: dtype };
      await writeFileAtomic(path.join(temp, "config.json"), JSON.stringify(config, null, 2) + "\n");
      const generation = this.generationConfig ?? {
        bos_token_id: this.config.bosTokenId ?? undefined,
        eos_token_id: this.config.eosTokenIds.length === 1 ? this.config.eosTokenIds[0] : this.config.eosTokenIds,
        pad_token_id: this.config.padTokenId ?? undefined,
      };
      await writeFileAtomic(path.join(temp, "generation_config.json"), JSON.stringify(generation, null, 2) + "\n");
      if (this.sourceDir) {
        for (const file of TOKENIZER_FILES) {
          await copyFile(path.join(this.sourceDir, file), path.join(temp, file)).catch((error: NodeJS.ErrnoException) => {
            if (error.code !== "ENOENT") throw error;
          });
        }
      }
    });
  }

  /** Frees the weights; refused while a call or a training run still uses the model. */
  dispose(): void {
    this.usage.assertIdle("model.dispose");
    this.native.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}
