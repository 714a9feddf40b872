// The files of one generated fraction (lib/spin/generator.ts writes them): `<split>-<k>.jsonl`,
// appended and fsynced as rows complete, or numbered parquet parts `<split>-<k>-<n>.parquet`,
// each written atomically; and their recovery after a crash (a torn last jsonl line cut off,
// stale parquet temp files removed, every row checked against the planned one).
import { open, readFile, readdir, rm, stat, truncate } from "node:fs/promises";
import path from "node:path";

import { parquetReadObjects } from "hyparquet";

import { SpinNativeError } from "../core/errors.js";
import { writeFileAtomic } from "../core/atomic.js";
import { appendJsonl, parquetBuffer } from "./dataset-write.js";
import { type ChatMessage, type SpinRow, toSpinRow } from "./rows.js";

/** Errors name the generator, whose files these are. */
const CALL = "SelfPlayGenerator";

function invalid(message: string): SpinNativeError {
  return new SpinNativeError(message, "INVALID_ARGUMENT", CALL);
}

/** A row the fraction is to hold: its input row and where it came from. */
export interface PlannedOutputRow {
  row: SpinRow;
  /** Its index in the input. */
  source: number;
}

export function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function toArrayBuffer(bytes: Buffer): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

/** The {real, generated} rows of a parquet file written by the generator (or any file with those columns). */
export async function readParquetRows(file: string): Promise<SpinRow[]> {
  let buffer: ArrayBuffer;
  try {
    buffer = toArrayBuffer(await readFile(file));
  } catch (error) {
    throw new SpinNativeError(`cannot read ${file}: ${(error as Error).message}`, "IO", CALL);
  }
  let rows: Record<string, unknown>[];
  try {
    rows = await parquetReadObjects({ file: buffer, columns: ["real", "generated"] });
  } catch (error) {
    throw new SpinNativeError(`${file} is not a readable parquet file: ${(error as Error).message}`, "IO", CALL);
  }
  return rows.map((r, i) => toSpinRow(r, { file, row: i }));
}


/** Parquet files of one fraction, in order; throws on a gap. */
export async function parquetParts(dir: string, split: string, fraction: number): Promise<string[]> {
  const pattern = new RegExp(`^${escapeRegExp(split)}-${fraction}-(\\d{5,})\\.parquet$`);
  const entries = await readdir(dir).catch(() => [] as string[]);
  const parts = entries
    .map((name) => ({ name, m: pattern.exec(name) }))
    .filter((e) => e.m !== null)
    .map((e) => ({ name: e.name, n: Number(e.m![1]) }))
    .sort((a, b) => a.n - b.n);
  parts.forEach((p, i) => {
    if (p.n !== i) throw new SpinNativeError(`${dir}: ${split}-${fraction}-${String(i).padStart(5, "0")}.parquet is missing before ${p.name}`, "IO", CALL);
  });
  return parts.map((p) => path.join(dir, p.name));
}

function parquetPartName(split: string, fraction: number, n: number): string {
  return `${split}-${fraction}-${String(n).padStart(5, "0")}.parquet`;
}

/** A fraction's output files. */
export class FractionOutput {
  readonly meta: string;
  readonly jsonl: string;
  #parts = 0;

  constructor(
    readonly dir: string,
    readonly split: string,
    readonly fraction: number,
    readonly format: "jsonl" | "parquet",
  ) {
    this.meta = path.join(dir, `${split}-${fraction}.meta.json`);
    this.jsonl = path.join(dir, `${split}-${fraction}.jsonl`);
  }

  /** Whether the fraction has output rows on disk. */
  async hasData(): Promise<boolean> {
    if (this.format === "parquet") return (await parquetParts(this.dir, this.split, this.fraction)).length > 0;
    return (await stat(this.jsonl).catch(() => null))?.size ? true : false;
  }

  async files(): Promise<string[]> {
    if (this.format === "parquet") return parquetParts(this.dir, this.split, this.fraction);
    return (await stat(this.jsonl).catch(() => null)) ? [this.jsonl] : [];
  }

  /**
   * Rows already written, checked against the plan (each must be the planned row's `real`);
   * a torn last jsonl line is cut off. Returns how many rows are done.
   */
  async recover(plan: { rows: readonly PlannedOutputRow[] }): Promise<number> {
    const expect = (rows: SpinRow[], file: string, first: number) => {
      rows.forEach((row, i) => {
        const planned = plan.rows[first + i];
        if (planned === undefined) throw invalid(`${file}: holds more rows than the fraction's ${plan.rows.length}`);
        if (JSON.stringify(plainReal(row.real)) !== JSON.stringify(plainReal(planned.row.real))) {
          throw invalid(`${file}: row ${first + i} is not the fraction's row ${first + i} (input row ${planned.source}); the output belongs to other inputs`);
        }
      });
    };
    if (this.format === "parquet") {
      // Stale temp files of an interrupted atomic write.
      for (const name of await readdir(this.dir)) {
        if (name.startsWith(`${this.split}-${this.fraction}-`) && name.includes(".parquet.tmp-")) await rm(path.join(this.dir, name), { force: true });
      }
      const parts = await parquetParts(this.dir, this.split, this.fraction);
      let done = 0;
      for (const part of parts) {
        const rows = await readParquetRows(part);
        expect(rows, part, done);
        done += rows.length;
      }
      this.#parts = parts.length;
      return done;
    }
    let bytes: Buffer;
    try {
      bytes = await readFile(this.jsonl);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return 0;
      throw new SpinNativeError(`cannot read ${this.jsonl}: ${(error as Error).message}`, "IO", CALL);
    }
    let end = bytes.length;
    if (end > 0 && bytes[end - 1] !== 0x0a) {
      // A torn last line: keep the complete lines only.
      end = bytes.lastIndexOf(0x0a) + 1;
      await truncate(this.jsonl, end);
      const handle = await open(this.jsonl, "r+");
      await handle.sync().finally(() => handle.close());
    }
    const text = bytes.subarray(0, end).toString("utf8");
    const lines = text.length === 0 ? [] : text.slice(0, -1).split("\n");
    const rows = lines.map((line, i) => {
      try {
        return toSpinRow(JSON.parse(line), { file: this.jsonl, row: i });
      } catch (error) {
        if (error instanceof SpinNativeError) throw error;
        throw new SpinNativeError(`${this.jsonl}: line ${i + 1} is not valid JSON`, "IO", CALL);
      }
    });
    expect(rows, this.jsonl, 0);
    return rows.length;
  }

  async append(rows: readonly SpinRow[]): Promise<void> {
    if (rows.length === 0) return;
    if (this.format === "jsonl") {
      await appendJsonl(this.jsonl, rows);
    } else {
      await writeFileAtomic(path.join(this.dir, parquetPartName(this.split, this.fraction, this.#parts)), parquetBuffer(rows));
      this.#parts++;
    }
  }
}

function plainReal(messages: readonly ChatMessage[]): { role: string; content: string }[] {
  return messages.map((m) => ({ role: m.role, content: m.content }));
}

