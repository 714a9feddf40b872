// One user of a model's parameters at a time. Native calls read and write the parameters
// on worker threads; two training runs on one model, or a forward pass during an optimizer
// step, would race. The policy is to refuse a conflicting call at once, naming both calls —
// nothing waits, so a mistake shows up where it is made instead of as a slow or reordered run:
// - reads (forward, log-probs, generation, save) may overlap each other;
// - an update (Optimizer.step) needs the model to itself;
// - a training run holds the model for its whole duration: the calls it makes itself (its
//   async context) pass, every other call is refused until it ends.
import { AsyncLocalStorage } from "node:async_hooks";

import { SpinNativeError } from "../core/errors.js";

interface Use {
  call: string;
  since: Date;
}

// The training run (if any) whose async context the current code runs in.
const runContext = new AsyncLocalStorage<Use>();

function describe(use: Use): string {
  return `${use.call} (since ${use.since.toISOString()})`;
}

/** @internal The usage ledger of one model (CausalLM.usage). */
export class ModelUsage {
  readonly #reads = new Set<Use>();
  #update: Use | null = null;
  #run: Use | null = null;

  /** Whether the calling code is the training run that holds the model. */
  #insideRun(): boolean {
    return this.#run !== null && runContext.getStore() === this.#run;
  }

  #refuse(call: string, holder: Use): never {
    throw new SpinNativeError(
      `${call}: the model is in use by ${describe(holder)}; one model serves one run at a time: wait for it to finish, or load a second copy`,
      "BUSY",
      call,
    );
  }

  #checkRead(call: string): void {
    if (this.#run) this.#refuse(call, this.#run);
    if (this.#update) this.#refuse(call, this.#update);
  }

  /** Starts a read of the parameters (possibly on a worker thread); call the result when it ends. */
  beginRead(call: string): () => void {
    if (this.#insideRun()) return () => {};
    this.#checkRead(call);
    const use = { call, since: new Date() };
    this.#reads.add(use);
    return () => this.#reads.delete(use);
  }

  /** Runs `work`, which reads the parameters (possibly on a worker thread). */
  async read<T>(call: string, work: () => Promise<T>): Promise<T> {
    const end = this.beginRead(call);
    try {
      return await work();
    } finally {
      end();
    }
  }

  /** A read on the JS thread: it only conflicts with what runs elsewhere. */
  readSync<T>(call: string, work: () => T): T {
    if (!this.#insideRun()) this.#checkRead(call);
    return work();
  }

  /** Runs `work`, which writes the parameters: nothing else may use the model meanwhile. */
  async update<T>(call: string, work: () => Promise<T>): Promise<T> {
    if (this.#insideRun()) return work();
    const busy = this.#run ?? this.#update ?? this.#reads.values().next().value;
    if (busy) this.#refuse(call, busy);
    const use = { call, since: new Date() };
    this.#update = use;
    try {
      return await work();
    } finally {
      this.#update = null;
    }
  }

  /** Runs a training run that holds the model until `work` settles. */
  async hold<T>(call: string, work: () => Promise<T>): Promise<T> {
    const busy = this.#run ?? this.#update ?? this.#reads.values().next().value;
    if (busy) this.#refuse(call, busy);
    const use = { call, since: new Date() };
    this.#run = use;
    try {
      return await runContext.run(use, work);
    } finally {
      this.#run = null;
    }
  }

  /** Refuses `call` (e.g. dispose) while anything uses the model. */
  assertIdle(call: string): void {
    const busy = this.#run ?? this.#update ?? this.#reads.values().next().value;
    if (busy && !this.#insideRun()) this.#refuse(call, busy);
  }
}
