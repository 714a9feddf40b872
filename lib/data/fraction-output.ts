// The files of one generated fraction (lib/spin/generator.ts writes them): `<split>-<k>.jsonl`,
// appended and fsynced as rows complete, or numbered parquet parts `<split>-<k>-<n>.parquet`,
// each written atomically; and their recovery after a crash (a torn last jsonl line cut off,
// stale parquet temp files removed, every row checked against the planned one); and
// mergeFractions, which concatenates a split's fractions into one file.
import { open, readFile, readdir, rm, stat, truncate } from "node:fs/promises";
import path from "node:path";

import { parquetReadObjects } from "hyparquet";

import { SpinNativeError } from "../core/errors.js";
import { writeFileAtomic } from "../core/atomic.js";
import { appendJsonl, parquetBuffer, writeParquet } from "./dataset-write.js";
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

/** {@link mergeFractions}' result. */
export interface MergeResult {
  file: string;
  rows: number;
  fractions: number;
  /** Whether the merged fractions hold every prompt of the input (skipped ones aside). */
  complete: boolean;
}

/** A fraction's `<split>-<k>.meta.json`: what produced it and how far it got. */
export interface FractionMeta {
  kind: "spin-native self-play generation";
  version: number;
  split: string;
  fraction: number;
  fracLen: number;
  totalPrompts: number;
  rows: number;
  skippedRows: number[];
  format: "jsonl" | "parquet";
  runHash: string;
  fractionHash: string;
  complete: boolean;
}

/** A JSON file's value, or null when the file does not exist. */
export async function readJsonIfExists(file: string, call: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new SpinNativeError(`cannot read ${file}: ${(error as Error).message}`, "IO", call);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new SpinNativeError(`${file} is not valid JSON`, "IO", call);
  }
}


/**
 * Concatenates fractions 0..k of a split, in order, into one file (written atomically):
 * `<outDir>/<split>.jsonl` or `.parquet` (the fractions' format) unless `options.output` names
 * another. Every fraction from 0 to the highest present must be complete and come from the
 * same inputs, settings and weights.
 *
 * @throws SpinNativeError `INVALID_ARGUMENT` for a missing or incomplete fraction or fractions
 *   of different runs; `IO` for unreadable files.
 */
export async function mergeFractions(outDir: string, split = "train", options: { output?: string } = {}): Promise<MergeResult> {
  const call = "mergeFractions";
  const dir = path.join(outDir, split);
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (error) {
    throw new SpinNativeError(`${call}: cannot read ${dir}: ${(error as Error).message}`, "IO", call);
  }
  const pattern = new RegExp(`^${escapeRegExp(split)}-(\\d+)\\.meta\\.json$`);
  const fractions = entries
    .map((name) => pattern.exec(name))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
  if (fractions.length === 0) throw new SpinNativeError(`${call}: ${dir} holds no generated fractions of split '${split}'`, "INVALID_ARGUMENT", call);
  const metas: FractionMeta[] = [];
  for (let k = 0; k <= fractions[fractions.length - 1]!; k++) {
    if (fractions[k] !== k) throw new SpinNativeError(`${call}: fraction ${k} of split '${split}' is missing in ${dir}`, "INVALID_ARGUMENT", call);
    const meta = (await readJsonIfExists(path.join(dir, `${split}-${k}.meta.json`), call)) as FractionMeta;
    if (!meta.complete) throw new SpinNativeError(`${call}: fraction ${k} of split '${split}' is incomplete; run it again to finish it`, "INVALID_ARGUMENT", call);
    if (metas.length > 0 && (meta.runHash !== metas[0]!.runHash || meta.format !== metas[0]!.format)) {
      throw new SpinNativeError(`${call}: fraction ${k} was generated from other inputs, settings, weights or format than fraction 0`, "INVALID_ARGUMENT", call);
    }
    metas.push(meta);
  }
  const format = metas[0]!.format;
  const file = options.output ?? path.join(outDir, `${split}.${format}`);
  let rows = 0;
  if (format === "jsonl") {
    const chunks: Buffer[] = [];
    for (const [k, meta] of metas.entries()) {
      const part = path.join(dir, `${split}-${k}.jsonl`);
      const bytes = await readFile(part).catch((error: Error) => {
        if ((error as NodeJS.ErrnoException).code === "ENOENT" && meta.rows === 0) return Buffer.alloc(0);
        throw new SpinNativeError(`${call}: cannot read ${part}: ${error.message}`, "IO", call);
      });
      const lines = bytes.length === 0 ? 0 : bytes.toString("utf8").split("\n").length - 1;
      if (lines !== meta.rows || (bytes.length > 0 && bytes[bytes.length - 1] !== 0x0a)) {
        throw new SpinNativeError(`${call}: ${part} holds ${lines} rows, its meta says ${meta.rows}; run the fraction again to repair it`, "INVALID_ARGUMENT", call);
      }
      rows += lines;
      chunks.push(bytes);
    }
    await writeFileAtomic(file, Buffer.concat(chunks));
  } else {
    const all: SpinRow[] = [];
    for (const [k, meta] of metas.entries()) {
      const before = all.length;
      for (const part of await parquetParts(dir, split, k)) all.push(...(await readParquetRows(part)));
      if (all.length - before !== meta.rows) throw new SpinNativeError(`${call}: fraction ${k} holds ${all.length - before} rows, its meta says ${meta.rows}`, "INVALID_ARGUMENT", call);
    }
    rows = all.length;
    await writeParquet(file, all);
  }
  const covered = metas[0]!.fracLen === 0 ? metas[0]!.totalPrompts : Math.min(metas[0]!.totalPrompts, metas.length * metas[0]!.fracLen);
  return { file, rows, fractions: metas.length, complete: covered === metas[0]!.totalPrompts };
}
