// One writer per output folder. Every command that writes a folder (train, sft, generate,
// iterate, and the library calls behind them) holds <folder>/.spin-native.lock while it
// runs: a second writer — another process, or another call in this one — is refused with a
// message naming the holder. The lock is a file created atomically (link(2) of a complete
// temporary file: it is never seen half-written) holding who took it. A lock whose process is
// gone (same host, pid dead or reused) is stale: the next writer takes it over and says so.
import { readFileSync, unlinkSync } from "node:fs";
import { link, mkdir, readFile, rename, rm, unlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

import { SpinNativeError } from "./errors.js";

/** Who holds a run folder. */
export interface LockHolder {
  pid: number;
  host: string;
  /** When the holder took the lock (ISO time). */
  started: string;
  /** The command or call that holds it, e.g. "spin-native iterate config.yaml". */
  command: string;
  /** The holder's process start time (Linux /proc), to tell a reused pid from the holder. */
  processStart: string | null;
}

export const LOCK_FILE = ".spin-native.lock";

function processStart(pid: number): string | null {
  try {
    // Field 22 of /proc/<pid>/stat, after the parenthesised command name (which may hold spaces).
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}

function alive(holder: LockHolder): boolean {
  try {
    process.kill(holder.pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ESRCH") return false;
  }
  // The pid exists: it is the holder unless it was reused by a process started later.
  return holder.processStart === null || processStart(holder.pid) === null || processStart(holder.pid) === holder.processStart;
}

async function readHolder(file: string): Promise<LockHolder | null> {
  try {
    return JSON.parse(await readFile(file, "utf8")) as LockHolder;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new SpinNativeError(`${file} is not a spin-native lock (${(error as Error).message}); remove it if no run uses the folder`, "LOCKED", "runLock");
  }
}

function describe(holder: LockHolder): string {
  return `pid ${holder.pid} on ${holder.host} since ${holder.started} (${holder.command})`;
}

/** An exclusive hold on a run folder, released by release() or at process exit. */
export class RunLock implements Disposable {
  readonly file: string;
  readonly holder: LockHolder;
  #held = true;
  readonly #onExit = () => this.release();

  private constructor(file: string, holder: LockHolder) {
    this.file = file;
    this.holder = holder;
    process.once("exit", this.#onExit);
  }

  /**
   * Takes `dir` (created if missing) for `command`, or throws a LOCKED error naming the
   * process that holds it. `lockFile` names a narrower lock for writers that share the folder
   * but not their files (one generation fraction each); `onTakeover` hears about a stale lock
   * taken over.
   */
  static async acquire(
    dir: string,
    command: string,
    options: { lockFile?: string; onTakeover?: (message: string) => void } = {},
  ): Promise<RunLock> {
    const onTakeover = options.onTakeover ?? ((m: string) => process.emitWarning(m));
    try {
      await mkdir(dir, { recursive: true });
    } catch (error) {
      throw new SpinNativeError(`cannot create the output folder ${dir}: ${(error as Error).message}`, "IO", "runLock");
    }
    const file = path.join(dir, options.lockFile ?? LOCK_FILE);
    const holder: LockHolder = {
      pid: process.pid,
      host: os.hostname(),
      started: new Date().toISOString(),
      command,
      processStart: processStart(process.pid),
    };
    const temp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}`;
    await writeFile(temp, JSON.stringify(holder, null, 2) + "\n");
    try {
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          await link(temp, file);
          return new RunLock(file, holder);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
        }
        const current = await readHolder(file);
        if (current === null) continue; // released meanwhile
        if (current.host !== holder.host || alive(current)) {
          const where = current.host === holder.host ? "" : " (another host: if that run is gone, remove the lock file)";
          throw new SpinNativeError(
            `${dir} is in use by ${describe(current)}${where}; two runs writing one folder would corrupt it. Wait for it, stop it, or use another output folder`,
            "LOCKED",
            "runLock",
          );
        }
        // Stale: move it aside (atomic, so only one newcomer wins it) and check it was the one read.
        const aside = `${file}.stale.${process.pid}`;
        try {
          await rename(file, aside);
        } catch {
          continue;
        }
        const moved = await readHolder(aside);
        if (moved && (moved.pid !== current.pid || moved.started !== current.started)) {
          // Another newcomer's fresh lock was moved: give it back and report that holder.
          await link(aside, file).catch(() => undefined);
          await unlink(aside).catch(() => undefined);
          throw new SpinNativeError(`${dir} is in use by ${describe(moved)}`, "LOCKED", "runLock");
        }
        await unlink(aside).catch(() => undefined);
        onTakeover(`spin-native: took over the stale lock of ${dir}: ${describe(current)} is gone`);
      }
      throw new SpinNativeError(`${dir}: could not take the lock ${file} (contended)`, "LOCKED", "runLock");
    } finally {
      await rm(temp, { force: true });
    }
  }

  /** Gives the folder back (only if the lock file is still this one). */
  release(): void {
    if (!this.#held) return;
    this.#held = false;
    process.removeListener("exit", this.#onExit);
    try {
      const current = JSON.parse(readFileSync(this.file, "utf8")) as LockHolder;
      if (current.pid === this.holder.pid && current.started === this.holder.started) {
        // Synchronous: release also runs from the process's exit event.
        unlinkSync(this.file);
      }
    } catch {
      // already gone
    }
  }

  [Symbol.dispose](): void {
    this.release();
  }
}

/** What lockRunFolder needs of a process group (lib/distributed/distributed.ts's Distributed). */
interface RankAgreement {
  readonly rank: number;
  max(values: Record<string, number>): Promise<Record<string, number>>;
}

/**
 * Takes `dir` for a run that may be data-parallel: rank 0 takes the lock for the whole job
 * (the other ranks write only under it), and every rank learns whether it could, so that
 * none goes on alone. Resolves to the lock on rank 0, null on the others.
 */
export async function lockRunFolder(dir: string, command: string, distributed: RankAgreement | null = null): Promise<RunLock | null> {
  if (!distributed) return RunLock.acquire(dir, command);
  let lock: RunLock | null = null;
  let failure: unknown = null;
  if (distributed.rank === 0) {
    try {
      lock = await RunLock.acquire(dir, command);
    } catch (error) {
      failure = error;
    }
  }
  let agreed: Record<string, number>;
  try {
    agreed = await distributed.max({ failed: failure ? 1 : 0 });
  } catch (error) {
    lock?.release(); // a peer is gone: the job will not run
    throw error;
  }
  if (failure) throw failure;
  if (agreed.failed) throw new SpinNativeError(`${dir}: rank 0 could not take the run folder (see rank 0's error)`, "LOCKED", "runLock");
  return lock;
}

/** What a lock records as its command: the call, in this process's command line. */
export function runCommand(call: string): string {
  return `${call} in "${process.argv.slice(1).join(" ")}"`;
}
