// Data parallelism over c10d (native/dist.cc): the process group from torchrun-style
// environment variables, collectives on Tensors, and the helpers the trainer uses.
import type { CausalLM } from "../model/causal-lm.js";
import { native } from "../core/native.js";
import type { NativeGradientReducer, NativeOptimizer } from "../core/native-types.js";
import { SpinNativeError } from "../core/errors.js";
import { Tensor } from "../core/tensor.js";
import { type ShardingStage, shardingStage } from "./sharding.js";

export type { ShardingStage } from "./sharding.js";

export interface DistributedOptions {
  rank: number;
  worldSize: number;
  masterAddr: string;
  masterPort: number;
  /** This rank's CUDA device index on its node (LOCAL_RANK). Default 0. */
  localRank?: number;
  /**
   * Every rank runs on this machine, so Gloo talks over masterAddr (default: masterAddr is a
   * loopback address). Otherwise it uses GLOO_SOCKET_IFNAME, or the interface this host's
   * name resolves to, as torch.distributed does.
   */
  singleNode?: boolean;
  /**
   * The job's id, the same on every rank (torchrun's rdzv_id): the rendezvous at
   * masterAddr:masterPort refuses a rank of another job, so a second job started on a port in
   * use fails alone. Default "none" (torchrun's default).
   */
  jobId?: string;
  /** Collectives (and the rendezvous) fail after this long without their peers. Default 1 800 000 ms (30 min, as torch.distributed): rank 0 alone saves checkpoints and evaluates while the others wait. */
  timeoutMs?: number;
  /** Gradient all-reduce bucket size in bytes (default 25 MiB, as DDP). */
  bucketBytes?: number;
  /**
   * Start each bucket's all-reduce during backward, as soon as its gradients are final
   * (default true); false reduces every bucket after backward.
   */
  overlapGradients?: boolean;
  /**
   * ZeRO stage (DeepSpeed's `zero_stage`): 0 replicates everything on every rank (DDP); 1
   * partitions the optimizer state across ranks; 2 also the averaged gradients; 3 also the
   * decoder layers' weights while a trainer runs (gathered per layer around each use; needs
   * gradient checkpointing). Each rank then holds about 1/worldSize of that state; the
   * updates equal the replicated ones. Default 0.
   */
  sharding?: ShardingStage;
}

/** What one gradient reduction did. */
export interface ReductionStats {
  buckets: number;
  /** Buckets whose all-reduce started during backward. */
  overlapped: number;
}

/**
 * Gradient averaging for one model, as PyTorch DDP's reducer: the parameters' gradients in
 * flat buckets, reverse forward order, each bucket's all-reduce started by autograd hooks as
 * soon as backward has produced all its gradients. Get one from {@link Distributed.gradientReducer}.
 *
 * Replicated, it reduces once per update (after the last micro-batch, as DDP's no_sync);
 * sharding gradients (ZeRO stage 2), after every micro-batch, so that whole gradients never
 * accumulate: drive it with {@link beforeBackward} and {@link afterBackward}.
 */
export class GradientReducer {
  /** @internal */
  constructor(
    private readonly handle: NativeGradientReducer,
    readonly overlap: boolean,
    /** Reduces every micro-batch into this rank's gradient shards (ZeRO stage 2). */
    readonly shardsGradients: boolean,
    private readonly serial: <T>(collective: () => Promise<T>) => Promise<T>,
  ) {}

  /** Call before each micro-batch's backward pass; `last` marks the one that completes the update's gradients. */
  beforeBackward(last: boolean): void {
    if (this.overlap && (last || this.shardsGradients)) this.handle.arm();
  }
  /** Call after each micro-batch's backward pass: reduces when this micro-batch's gradients are due (null otherwise). */
  afterBackward(last: boolean): Promise<ReductionStats | null> {
    return last || this.shardsGradients ? this.finish() : Promise.resolve(null);
  }
  /** Averages every gradient across ranks: waits for the buckets started during backward, reduces the rest. */
  finish(): Promise<ReductionStats> {
    return this.serial(() => this.handle.finish());
  }
  /** Releases the reducer; its hooks on the parameters become no-ops. */
  dispose(): void {
    this.handle.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * A joined process group (one per process). Its collectives run one after another, in call
 * order: every rank must issue the same collectives in the same order, which concurrent
 * Promises would not guarantee.
 */
export class Distributed {
  #queue: Promise<unknown> = Promise.resolve();
  readonly #reducers = new WeakMap<CausalLM, GradientReducer>();

  private constructor(
    readonly rank: number,
    readonly worldSize: number,
    readonly localRank: number,
    readonly bucketBytes: number,
    readonly overlapGradients: boolean,
    readonly sharding: ShardingStage,
  ) {}

  /** Joins the group: rank 0 hosts the TCPStore at masterAddr:masterPort. */
  static async init(options: DistributedOptions): Promise<Distributed> {
    const timeoutMs = options.timeoutMs ?? 1_800_000;
    if (!(timeoutMs > 0)) throw new SpinNativeError(`distributed: timeoutMs must be positive, got ${timeoutMs}`, "INVALID_ARGUMENT", "distributed");
    const singleNode = options.singleNode ?? /^(127\.|localhost$|::1$)/.test(options.masterAddr);
    const sharding = shardingStage(options.sharding ?? 0, "distributed: sharding");
    await native.initProcessGroup({ ...options, localRank: options.localRank ?? 0, singleNode, timeoutMs, jobId: options.jobId ?? "none" });
    return new Distributed(options.rank, options.worldSize, options.localRank ?? 0, options.bucketBytes ?? 25 << 20, options.overlapGradients ?? true, sharding);
  }

  /**
   * Runs `collective` after every collective called before it.
   * @internal the sharded optimizer's step is a collective
   */
  readonly serialize = <T>(collective: () => Promise<T>): Promise<T> => {
    const run = this.#queue.then(collective);
    this.#queue = run.catch(() => undefined);
    return run;
  };

  /**
   * Joins from RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT and the job id
   * SPIN_JOB_ID or else TORCHELASTIC_RUN_ID (as `spin-native launch` and torchrun set them);
   * null when WORLD_SIZE is unset or 1.
   */
  static async fromEnv(
    env: NodeJS.ProcessEnv = process.env,
    options: Pick<DistributedOptions, "timeoutMs" | "bucketBytes" | "overlapGradients" | "sharding"> = {},
  ): Promise<Distributed | null> {
    const worldSize = Number(env.WORLD_SIZE ?? 1);
    if (!(worldSize > 1)) return null;
    const rank = Number(env.RANK);
    const masterPort = Number(env.MASTER_PORT ?? 29500);
    if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
      throw new SpinNativeError(`distributed: RANK=${env.RANK} is not in [0, WORLD_SIZE=${worldSize})`, "INVALID_ARGUMENT", "distributed");
    }
    const localRank = Number(env.LOCAL_RANK ?? 0);
    const masterAddr = env.MASTER_ADDR ?? "127.0.0.1";
    const singleNode = env.LOCAL_WORLD_SIZE !== undefined ? Number(env.LOCAL_WORLD_SIZE) === worldSize : undefined;
    const jobId = env.SPIN_JOB_ID || env.TORCHELASTIC_RUN_ID;
    return Distributed.init({
      rank,
      worldSize,
      localRank,
      masterAddr,
      masterPort,
      ...(singleNode !== undefined ? { singleNode } : {}),
      ...(jobId ? { jobId } : {}),
      ...options,
    });
  }

  get isMain(): boolean {
    return this.rank === 0;
  }

  allReduce(tensor: Tensor, op: "sum" | "avg" | "max" = "sum"): Promise<void> {
    const handle = Tensor.handleOf(tensor, "allReduce");
    return this.serialize(() => native.allReduce(handle, op));
  }
  broadcast(tensor: Tensor, root = 0): Promise<void> {
    const handle = Tensor.handleOf(tensor, "broadcast");
    return this.serialize(() => native.broadcast(handle, root));
  }
  async allGather(tensor: Tensor): Promise<Tensor[]> {
    const handle = Tensor.handleOf(tensor, "allGather");
    return (await this.serialize(() => native.allGather(handle))).map((h) => new Tensor(h));
  }
  barrier(): Promise<void> {
    return this.serialize(() => native.barrier());
  }
  /**
   * A reducer hooked on `model`'s parameters (set requires-grad first); the trainers make one
   * per run. Given the run's optimizer sharded at stage 2, it fills that optimizer's gradient
   * shards. Dispose it when done.
   */
  gradientReducer(model: CausalLM, optimizer?: { readonly sharding: number; readonly nativeHandle: NativeOptimizer }): GradientReducer {
    const shards = optimizer !== undefined && optimizer.sharding >= 2;
    const handle = native.createGradientReducer(model.nativeHandle, this.bucketBytes, shards ? optimizer.nativeHandle : undefined);
    return new GradientReducer(handle, this.overlapGradients, shards, this.serialize);
  }
  /** Averages every parameter gradient of `model` across ranks now, in flat buckets. */
  async averageGradients(model: CausalLM): Promise<void> {
    let reducer = this.#reducers.get(model);
    if (!reducer) {
      reducer = new GradientReducer(native.createGradientReducer(model.nativeHandle, this.bucketBytes), false, false, this.serialize);
      this.#reducers.set(model, reducer);
    }
    await reducer.finish();
  }
  /** Makes every rank's parameters rank `root`'s. */
  broadcastParameters(model: CausalLM, root = 0): Promise<void> {
    const handle = model.nativeHandle;
    return this.serialize(() => native.broadcastParameters(handle, root));
  }
  /** Averages a record of numbers across ranks (same keys on every rank). */
  averageMetrics(metrics: Record<string, number>): Promise<Record<string, number>> {
    return this.#reduceRecord(metrics, "avg");
  }
  /** Sums a record of numbers across ranks (same keys on every rank), in float64. */
  sum(values: Record<string, number>): Promise<Record<string, number>> {
    return this.#reduceRecord(values, "sum");
  }
  /** The largest value of each key across ranks (same keys on every rank). */
  max(values: Record<string, number>): Promise<Record<string, number>> {
    return this.#reduceRecord(values, "max");
  }
  async #reduceRecord(record: Record<string, number>, op: "sum" | "avg" | "max"): Promise<Record<string, number>> {
    const keys = Object.keys(record).sort();
    const values = new Tensor(native.fromTypedArray(Float64Array.from(keys, (k) => record[k]!), [keys.length], "float64"));
    try {
      await this.allReduce(values, op);
      const reduced = values.toTypedArray() as Float64Array;
      return Object.fromEntries(keys.map((k, i) => [k, reduced[i]!]));
    } finally {
      values.dispose();
    }
  }
  destroy(): void {
    native.destroyProcessGroup();
  }
}
