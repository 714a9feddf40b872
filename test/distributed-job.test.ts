// Two jobs on one machine: the rendezvous knows its job. Rank 0 publishes the job id in the
// store; a rank of another job that reaches the port is refused before it writes anything
// there, and a second job's rank 0 on a port in use fails with a clear error; the first job
// forms and runs as if nothing happened. Workers are real processes on loopback.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { REPO } from "./cli-helpers.js";
import { SpinNativeError, launch } from "../lib/index.js";

const WORKER = path.join(REPO, "test", "dist-worker.mjs");
const root = mkdtempSync(path.join(os.tmpdir(), "spin-dist-job-"));
const children = new Set<ChildProcess>();
afterAll(() => {
  for (const child of children) child.kill("SIGKILL"); // left running by a failed test
  rmSync(root, { recursive: true, force: true });
});

beforeAll(() => {
  execFileSync(path.join(REPO, "node_modules", ".bin", "tsc"), ["-p", "tsconfig.build.json"], { cwd: REPO, stdio: "pipe" });
}, 120_000);

/** One rank of a 2-rank "collectives" job, started by hand as a launcher would; resolves to its exit code and stderr. */
function rank(rank: number, port: number, dir: string, job: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [WORKER, "collectives", dir], {
    cwd: REPO,
    stdio: ["ignore", "ignore", "pipe"],
    env: {
      ...process.env,
      OMP_NUM_THREADS: "1",
      RANK: String(rank),
      LOCAL_RANK: String(rank),
      WORLD_SIZE: "2",
      LOCAL_WORLD_SIZE: "2",
      MASTER_ADDR: "127.0.0.1",
      MASTER_PORT: String(port),
      // Long enough for the whole test: job A's rank 0 waits for its rank 1 meanwhile.
      DIST_TIMEOUT_MS: "60000",
      ...job,
    },
  });
  children.add(child);
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve) =>
    child.on("close", (code) => {
      children.delete(child);
      resolve({ code, stderr });
    }),
  );
}

test("a rank of another job is refused, a second job's rank 0 on the port fails, and the first job completes", async () => {
  const dir = mkdtempSync(path.join(root, "jobs-"));
  const port = 20000 + Math.floor(Math.random() * 30000);
  const a0 = rank(0, port, dir, { SPIN_JOB_ID: "job-a" });
  // Job B's rank 1 reaches job A's store (it retries until rank 0 listens) and reads A's id.
  const b1 = await rank(1, port, path.join(dir, "b"), { SPIN_JOB_ID: "job-b" });
  expect(b1.code, b1.stderr).not.toBe(0);
  expect(b1.stderr).toContain(`127.0.0.1:${port} belongs to another job (id job-a); this rank's job is job-b: use another --master-port`);
  // Job B's rank 0: job A holds the port (it just answered B's rank 1).
  const b0 = await rank(0, port, path.join(dir, "b"), { SPIN_JOB_ID: "job-b" });
  expect(b0.code, b0.stderr).not.toBe(0);
  expect(b0.stderr).toContain(`port ${port} is in use (another job?): choose another --master-port`);
  // Job A's own rank 1 (its id from torchrun's variable) joins, and A runs its collectives.
  const a1 = await rank(1, port, dir, { TORCHELASTIC_RUN_ID: "job-a" });
  const a = [await a0, a1];
  a.forEach((exit, r) => expect(exit.code, `rank ${r}: ${exit.stderr}`).toBe(0));
  for (const r of [0, 1]) {
    const result = JSON.parse(readFileSync(path.join(dir, `collectives-rank${r}.json`), "utf8"));
    expect(result.sum).toEqual([3, 30]);
    expect(result.gathered).toEqual([[0, 0], [1, 1]]);
  }
}, 90_000);

describe("launch gives every worker the job's id", () => {
  const ids = async (options: Partial<Parameters<typeof launch>[0]> = {}) => {
    const lines: string[] = [];
    const result = await launch({
      nprocPerNode: 2,
      command: [process.execPath, "-e", "console.log(process.env.SPIN_JOB_ID)"],
      onLine: (line) => lines.push(line.replace(/^\[rank \d\] /, "")),
      ...options,
    });
    expect(result.exitCode).toBe(0);
    return lines;
  };

  test("a random id per job, the same on its ranks", async () => {
    const [first, second] = [await ids(), await ids()];
    expect(first).toHaveLength(2);
    expect(first[0]).toMatch(/^[0-9a-f]{16}$/);
    expect(first[1]).toBe(first[0]);
    expect(second[0]).not.toBe(first[0]);
  });

  test("the id given (option, SPIN_JOB_ID, TORCHELASTIC_RUN_ID)", async () => {
    expect(await ids({ jobId: "given" })).toEqual(["given", "given"]);
    expect(await ids({ env: { SPIN_JOB_ID: "from-env" } })).toEqual(["from-env", "from-env"]);
    expect(await ids({ env: { TORCHELASTIC_RUN_ID: "elastic" } })).toEqual(["elastic", "elastic"]);
  });

  test("several nodes need an id given", () => {
    let error: unknown;
    try {
      void launch({ nprocPerNode: 1, nnodes: 2, command: [process.execPath, "-e", ""] });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(SpinNativeError);
    expect((error as SpinNativeError).message).toMatch(/same job id on each: give --rdzv-id=ID or set SPIN_JOB_ID/);
  });
});
