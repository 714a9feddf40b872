// Data parallelism over c10d (native/dist.cc): the process group from torchrun-style
// environment variables, collectives on Tensors, and the helpers the trainer uses.
import type { CausalLM } from "./model.js";
import { native } from "./native.js";
import { SpinNativeError } from "./errors.js";
import { Tensor } from "./tensor.js";

export interface DistributedOptions {
  rank: number;
  worldSize: number;
  masterAddr: string;
  masterPort: number;
  /** Collectives (and the rendezvous) fail after this long without their peers. Default 300 000 ms. */
  timeoutMs?: number;
  /** Gradient all-reduce bucket size in bytes (default 25 MiB, as DDP). */
  bucketBytes?: number;
}

/** A joined process group (one per process). */
export class Distributed {
  private constructor(
    readonly rank: number,
    readonly worldSize: number,
    readonly bucketBytes: number,
  ) {}

  /** Joins the group: rank 0 hosts the TCPStore at masterAddr:masterPort. */
  static async init(options: DistributedOptions): Promise<Distributed> {
    await native.initProcessGroup({ ...options, timeoutMs: options.timeoutMs ?? 300_000 });
    return new Distributed(options.rank, options.worldSize, options.bucketBytes ?? 25 << 20);
  }

  /**
   * Joins from RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (as torchrun and `spin-native launch`
   * set them); null when WORLD_SIZE is unset or 1.
   */
  static async fromEnv(env: NodeJS.ProcessEnv = process.env, options: { timeoutMs?: number; bucketBytes?: number } = {}): Promise<Distributed | null> {
    const worldSize = Number(env.WORLD_SIZE ?? 1);
    if (!(worldSize > 1)) return null;
    const rank = Number(env.RANK);
    const masterPort = Number(env.MASTER_PORT ?? 29500);
    if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
      throw new SpinNativeError(`distributed: RANK=${env.RANK} is not in [0, WORLD_SIZE=${worldSize})`, "INVALID_ARGUMENT", "distributed");
    }
    return Distributed.init({ rank, worldSize, masterAddr: env.MASTER_ADDR ?? "127.0.0.1", masterPort, ...options });
  }

  get isMain(): boolean {
    return this.rank === 0;
  }

  allReduce(tensor: Tensor, op: "sum" | "avg" | "max" = "sum"): Promise<void> {
    return native.allReduce(Tensor.handleOf(tensor, "allReduce"), op);
  }
  broadcast(tensor: Tensor, root = 0): Promise<void> {
    return native.broadcast(Tensor.handleOf(tensor, "broadcast"), root);
  }
  async allGather(tensor: Tensor): Promise<Tensor[]> {
    return (await native.allGather(Tensor.handleOf(tensor, "allGather"))).map((h) => new Tensor(h));
  }
  barrier(): Promise<void> {
    return native.barrier();
  }
  /** Averages every parameter gradient of `model` across ranks, in flat buckets. */
  averageGradients(model: CausalLM): Promise<void> {
    return native.allReduceGradients(model.nativeHandle, this.bucketBytes);
  }
  /** Makes every rank's parameters rank `root`'s. */
  broadcastParameters(model: CausalLM, root = 0): Promise<void> {
    return native.broadcastParameters(model.nativeHandle, root);
  }
  /** Averages a record of numbers across ranks (same keys on every rank). */
  async averageMetrics(metrics: Record<string, number>): Promise<Record<string, number>> {
    const keys = Object.keys(metrics).sort();
    const values = new Tensor(native.fromTypedArray(Float64Array.from(keys, (k) => metrics[k]!), [keys.length], "float64"));
    try {
      await this.allReduce(values, "avg");
      const averaged = values.toTypedArray() as Float64Array;
      return Object.fromEntries(keys.map((k, i) => [k, averaged[i]!]));
    } finally {
      values.dispose();
    }
  }
  destroy(): void {
    native.destroyProcessGroup();
  }
}
