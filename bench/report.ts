// Benchmark reporting: the machine's description, a printed table, and a JSON record under
// bench/results/<date>-<workload>-torch<version>.json.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { runtimeInfo } from "../lib/index.js";

export interface Row {
  name: string;
  [column: string]: string | number;
}

export function machine(): Record<string, string | number> {
  const cpuinfo = (() => {
    try {
      return readFileSync("/proc/cpuinfo", "utf8");
    } catch {
      return "";
    }
  })();
  const info = runtimeInfo();
  return {
    cpu: /model name\s*:\s*(.+)/.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? "unknown",
    cores: os.availableParallelism(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    torchVersion: info.torchVersion,
    numThreads: info.numThreads,
    blas: info.blas,
    ompWaitPolicy: process.env.OMP_WAIT_POLICY ?? "(libgomp default)",
    node: process.version,
  };
}

function format(value: string | number): string {
  if (typeof value === "string") return value;
  if (Number.isInteger(value)) return String(value);
  return Math.abs(value) >= 100 ? value.toFixed(0) : Math.abs(value) >= 1 ? value.toFixed(2) : value.toPrecision(3);
}

export function printTable(title: string, rows: Row[]): void {
  const columns = [...new Set(rows.flatMap((row) => Object.keys(row)))];
  const cells = rows.map((row) => columns.map((c) => (row[c] === undefined ? "" : format(row[c]!))));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i]!.length)));
  const line = (values: string[]) => "| " + values.map((v, i) => v.padEnd(widths[i]!)).join(" | ") + " |";
  console.log(`\n${title}`);
  console.log(line(columns));
  console.log("|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|");
  for (const row of cells) console.log(line(row));
}

const resultsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "bench", "results");

/**
 * Writes bench/results/<date>-<workload>-torch<version>.json atomically (one record per
 * libtorch the bench ran on); returns its path.
 */
export function record(workload: string, rows: Row[], extra: Record<string, unknown> = {}): string {
  mkdirSync(resultsDir, { recursive: true });
  const date = new Date().toISOString().slice(0, 10);
  const file = path.join(resultsDir, `${date}-${workload}-torch${runtimeInfo().torchVersion}.json`);
  const body = JSON.stringify({ workload, date: new Date().toISOString(), machine: machine(), rows, ...extra }, null, 2);
  writeFileSync(file + ".tmp", body + "\n");
  renameSync(file + ".tmp", file);
  return file;
}
