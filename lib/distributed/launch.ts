// The launcher (`spin-native launch`, torchrun-like): starts one worker process per local
// rank with RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT and SPIN_JOB_ID (the job's
// id, which the rendezvous checks so that two jobs never join each other) set, prefixes their
// output by rank, forwards SIGINT/SIGTERM, and when any rank fails kills the others and
// reports which rank failed. Like torchrun, it splits the cores between the local ranks
// (OMP_NUM_THREADS) unless told otherwise: ranks that each take every core slow each other down.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import os from "node:os";
import readline from "node:readline";

import { SpinNativeError } from "../core/errors.js";

export interface LaunchOptions {
  nprocPerNode: number;
  nnodes?: number;
  nodeRank?: number;
  masterAddr?: string;
  masterPort?: number;
  /**
   * The job's id (torchrun's --rdzv-id), given to every worker as SPIN_JOB_ID: the rendezvous
   * refuses a rank of another job. Default: SPIN_JOB_ID or else TORCHELASTIC_RUN_ID of the
   * environment, else a random id. Several nodes need the same id on each: with nnodes > 1
   * one must be given.
   */
  jobId?: string;
  /** The command and its arguments, run once per local rank. */
  command: string[];
  /** Receives each worker's output line, prefixed "[rank r] ". Default: this process's stdout/stderr. */
  onLine?: (line: string, rank: number, stream: "stdout" | "stderr") => void;
  env?: NodeJS.ProcessEnv;
}

export interface LaunchResult {
  /** 0 when every rank succeeded. */
  exitCode: number;
  /** The first rank that failed, and how. */
  failed: { rank: number; code: number | null; signal: NodeJS.Signals | null } | null;
}

export function launch(options: LaunchOptions): Promise<LaunchResult> {
  const nnodes = options.nnodes ?? 1;
  const nodeRank = options.nodeRank ?? 0;
  const world = options.nprocPerNode * nnodes;
  if (!Number.isInteger(options.nprocPerNode) || options.nprocPerNode < 1) {
    throw new SpinNativeError("launch: --nproc-per-node must be a positive integer", "INVALID_ARGUMENT", "launch");
  }
  if (options.command.length === 0) throw new SpinNativeError("launch: no command to run (put it after --)", "INVALID_ARGUMENT", "launch");
  const env = { ...process.env, ...options.env };
  const jobId = options.jobId ?? (env.SPIN_JOB_ID || env.TORCHELASTIC_RUN_ID || (nnodes === 1 ? randomBytes(8).toString("hex") : ""));
  if (!jobId) {
    throw new SpinNativeError("launch: a job on several nodes needs the same job id on each: give --rdzv-id=ID or set SPIN_JOB_ID", "INVALID_ARGUMENT", "launch");
  }
  const write = options.onLine ?? ((line, _rank, stream) => (stream === "stdout" ? process.stdout : process.stderr).write(line + "\n"));
  const children: ChildProcess[] = [];
  let failed: LaunchResult["failed"] = null;
  let running = options.nprocPerNode;

  return new Promise((resolve) => {
    const forward = (signal: NodeJS.Signals) => () => children.forEach((c) => c.kill(signal));
    const onInt = forward("SIGINT");
    const onTerm = forward("SIGTERM");
    process.on("SIGINT", onInt);
    process.on("SIGTERM", onTerm);
    const finish = () => {
      process.off("SIGINT", onInt);
      process.off("SIGTERM", onTerm);
      resolve({ exitCode: failed ? (failed.code ?? 1) || 1 : 0, failed });
    };
    const threads = String(Math.max(1, Math.floor(os.availableParallelism() / options.nprocPerNode)));
    for (let local = 0; local < options.nprocPerNode; local++) {
      const rank = nodeRank * options.nprocPerNode + local;
      const child = spawn(options.command[0]!, options.command.slice(1), {
        stdio: ["ignore", "pipe", "pipe"],
        env: {
          OMP_NUM_THREADS: threads,
          ...env,
          SPIN_JOB_ID: jobId,
          RANK: String(rank),
          LOCAL_RANK: String(local),
          WORLD_SIZE: String(world),
          LOCAL_WORLD_SIZE: String(options.nprocPerNode),
          MASTER_ADDR: options.masterAddr ?? "127.0.0.1",
          MASTER_PORT: String(options.masterPort ?? 29500),
        },
      });
      children.push(child);
      for (const stream of ["stdout", "stderr"] as const) {
        readline.createInterface({ input: child[stream]! }).on("line", (line) => write(`[rank ${rank}] ${line}`, rank, stream));
      }
      child.on("exit", (code, signal) => {
        running--;
        if ((code !== 0 || signal) && !failed) {
          failed = { rank, code, signal };
          write(`[launch] rank ${rank} failed (${signal ? `signal ${signal}` : `exit code ${code}`}); stopping the other ranks`, rank, "stderr");
          for (const other of children) if (other !== child && other.exitCode === null && other.signalCode === null) other.kill("SIGTERM");
          setTimeout(() => children.forEach((c) => c.exitCode === null && c.signalCode === null && c.kill("SIGKILL")), 5000).unref();
        } else if (code !== 0 && !signal) {
          write(`[launch] rank ${rank} also exited with code ${code}`, rank, "stderr");
        }
        if (running === 0) finish();
      });
    }
  });
}

/**
 * `device` for this worker: "cuda" becomes "cuda:LOCAL_RANK" in a data-parallel run (one GPU
 * per local rank, as torchrun workers do); anything else is returned as is.
 */
export function rankDevice(device: string, env: NodeJS.ProcessEnv = process.env): string {
  return device === "cuda" && Number(env.WORLD_SIZE ?? 1) > 1 ? `cuda:${Number(env.LOCAL_RANK ?? 0)}` : device;
}
