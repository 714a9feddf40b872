// Writing SpinRows as JSON Lines or parquet, and converting a dataset from one format to the
// other (the `spin-native convert` command).
//
// - JSON Lines: one `{"real": [...], "generated": [...]}` per line (extra message fields kept),
//   the generator's format (message keys role, content, then any others). writeJsonl replaces the file atomically (a temp file beside it,
//   fsynced, renamed over it); appendJsonl appends and fsyncs.
// - Parquet: columns `real` and `generated`, each LIST<STRUCT<content: STRING, role: STRING>>
//   (OPTIONAL list / REPEATED `list` / OPTIONAL `element` group, the 3-level layout pyarrow
//   writes), as the original's released SPIN datasets (UCLA-AGI/SPIN_iter*,
//   `list<struct<content: string, role: string>>`). hyparquet-writer writes these nested types
//   through an explicit schema (Dremel encoding). Message fields other than role and content
//   are not stored. Written one row group at a time (parquetWriteRows) to a temp file that is
//   fsynced and renamed over the target, so a writer never holds more than a row group of rows
//   when given an (async) iterable.
import { mkdir, open, stat } from "node:fs/promises";
import path from "node:path";

import { fileWriter, parquetWriteBuffer, parquetWriteRows, type SchemaElement } from "hyparquet-writer";

import { SpinNativeError } from "../core/errors.js";
import { replaceFileAtomic } from "../core/atomic.js";
import { dataFormatOf, type DataSplit } from "./dataset-files.js";
import { streamSpinRows } from "./dataset-read.js";
import type { ChatMessage, SpinRow } from "./rows.js";

/** Rows to write: an array, any iterable, or an async iterable (streamed). */
export type RowSource = Iterable<SpinRow> | AsyncIterable<SpinRow>;

/** Options of {@link writeParquet}. */
export interface ParquetWriteOptions {
  /** Rows per row group; a reader holds one row group at a time. Default 10 000. */
  rowGroupSize?: number;
}

const DEFAULT_ROW_GROUP = 10_000;

/** The parquet schema of a SPIN dataset: real and generated as LIST<STRUCT<content, role>>. */
export const SPIN_PARQUET_SCHEMA: SchemaElement[] = (() => {
  const column = (name: string): SchemaElement[] => [
    { name, repetition_type: "OPTIONAL", converted_type: "LIST", num_children: 1 },
    { name: "list", repetition_type: "REPEATED", num_children: 1 },
    { name: "element", repetition_type: "OPTIONAL", num_children: 2 },
    { name: "content", repetition_type: "OPTIONAL", type: "BYTE_ARRAY", converted_type: "UTF8" },
    { name: "role", repetition_type: "OPTIONAL", type: "BYTE_ARRAY", converted_type: "UTF8" },
  ];
  return [{ name: "schema", num_children: 2 }, ...column("real"), ...column("generated")];
})();

function ioError(call: string, file: string, error: unknown): SpinNativeError {
  if (error instanceof SpinNativeError) return error;
  return new SpinNativeError(`${call}: cannot write ${file}: ${(error as Error).message}`, "IO", call);
}

/** Creates the parent folders, then replaces `file` atomically through `fill` (lib/core/atomic.ts). */
async function replaceAtomically(file: string, call: string, fill: (temp: string) => Promise<void>): Promise<void> {
  try {
    await mkdir(path.dirname(path.resolve(file)), { recursive: true });
    await replaceFileAtomic(file, fill);
  } catch (error) {
    throw ioError(call, file, error);
  }
}

/** A message with role and content first (the order the generator writes), other fields after. */
function ordered(messages: readonly ChatMessage[]): ChatMessage[] {
  return messages.map(({ role, content, ...rest }) => ({ role, content, ...rest }));
}

/** One JSON Lines row, newline included: the one serialization every jsonl writer uses. */
export function jsonlLine(row: SpinRow): string {
  return JSON.stringify({ real: ordered(row.real), generated: ordered(row.generated) }) + "\n";
}

async function* asAsync(rows: RowSource): AsyncGenerator<SpinRow> {
  yield* rows;
}

/**
 * Writes rows as JSON Lines, replacing `file` atomically (parent folders are created). Rows
 * from an iterable are streamed to disk in chunks.
 *
 * @returns The number of rows written.
 * @throws SpinNativeError `IO` when the file cannot be written (`file` is then unchanged).
 */
export async function writeJsonl(file: string, rows: RowSource): Promise<number> {
  let count = 0;
  await replaceAtomically(file, "writeJsonl", async (temp) => {
    const handle = await open(temp, "w");
    try {
      let chunk = "";
      for await (const row of asAsync(rows)) {
        chunk += jsonlLine(row);
        count++;
        if (chunk.length >= 1 << 20) {
          await handle.write(chunk);
          chunk = "";
        }
      }
      if (chunk !== "") await handle.write(chunk);
    } finally {
      await handle.close();
    }
  });
  return count;
}

/**
 * Appends rows to a JSON Lines file (created when missing) and fsyncs it. A file whose last line
 * lacks its newline gets one first when that line is valid JSON; a torn last line (not valid
 * JSON, e.g. from a crash in the middle of a write) is refused rather than glued to new rows.
 *
 * @returns The number of rows appended.
 * @throws SpinNativeError `IO` when the file cannot be written or ends with a torn line.
 */
export async function appendJsonl(file: string, rows: RowSource): Promise<number> {
  const call = "appendJsonl";
  let text = "";
  let count = 0;
  for await (const row of asAsync(rows)) {
    text += jsonlLine(row);
    count++;
  }
  try {
    await mkdir(path.dirname(path.resolve(file)), { recursive: true });
    const size = (await stat(file).catch(() => null))?.size ?? 0;
    const handle = await open(file, "a+");
    try {
      const lastByte = Buffer.alloc(1);
      if (size > 0) await handle.read(lastByte, 0, 1, size - 1);
      // Only a last line without its newline needs the tail read (an append is usually to a complete file).
      if (size > 0 && lastByte[0] !== 0x0a) {
        const tail = Buffer.alloc(Math.min(size, 1 << 20));
        await handle.read(tail, 0, tail.length, size - tail.length);
        const cut = tail.lastIndexOf(0x0a);
        if (cut < 0 && tail.length < size) throw new SpinNativeError(`${call}: ${file} ends with a line longer than 1 MiB without a newline`, "IO", call);
        const last = tail.subarray(cut + 1).toString("utf8");
        try {
          JSON.parse(last);
        } catch {
          throw new SpinNativeError(`${call}: ${file} ends with a torn line (not valid JSON, no newline); repair or truncate it before appending`, "IO", call);
        }
        text = "\n" + text;
      }
      if (text !== "") await handle.write(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (error) {
    throw ioError(call, file, error);
  }
  return count;
}

function plain(messages: readonly ChatMessage[]): { content: string; role: string }[] {
  return messages.map((m) => ({ content: m.content, role: m.role }));
}

/** Rows as one in-memory parquet file (one row group) in {@link SPIN_PARQUET_SCHEMA}. */
export function parquetBuffer(rows: readonly SpinRow[]): Uint8Array {
  const buffer = parquetWriteBuffer({
    columnData: [
      { name: "real", data: rows.map((r) => plain(r.real)) },
      { name: "generated", data: rows.map((r) => plain(r.generated)) },
    ],
    schema: SPIN_PARQUET_SCHEMA,
  });
  return new Uint8Array(buffer);
}

/**
 * Writes rows as parquet in the SPIN datasets' schema ({@link SPIN_PARQUET_SCHEMA}), replacing
 * `file` atomically (parent folders are created). Only role and content of each message are
 * stored. Rows from an iterable are pulled one row group at a time.
 *
 * @returns The number of rows written.
 * @throws SpinNativeError `INVALID_ARGUMENT` for a bad rowGroupSize; `IO` when the file cannot be
 *   written (`file` is then unchanged).
 */
export async function writeParquet(file: string, rows: RowSource, options: ParquetWriteOptions = {}): Promise<number> {
  const call = "writeParquet";
  const rowGroupSize = options.rowGroupSize ?? DEFAULT_ROW_GROUP;
  if (!Number.isInteger(rowGroupSize) || rowGroupSize < 1) {
    throw new SpinNativeError(`${call}: rowGroupSize must be a positive integer, got ${rowGroupSize}`, "INVALID_ARGUMENT", call);
  }
  let count = 0;
  async function* plainRows(): AsyncGenerator<Record<string, unknown>> {
    for await (const row of asAsync(rows)) {
      count++;
      yield { real: plain(row.real), generated: plain(row.generated) };
    }
  }
  await replaceAtomically(file, call, async (temp) => {
    await parquetWriteRows({
      writer: fileWriter(temp),
      rows: plainRows(),
      columns: [{ name: "real" }, { name: "generated" }],
      schema: SPIN_PARQUET_SCHEMA,
      rowGroupSize,
      createdBy: "spin-native",
    });
  });
  return count;
}

/** What {@link convertDataset} wrote. */
export interface ConvertResult {
  file: string;
  rows: number;
  format: "jsonl" | "parquet";
}

/**
 * Converts a dataset to JSON Lines or parquet, by the extension of `to` (`.jsonl` or
 * `.parquet`). `from` is anything {@link streamSpinRows} reads (a file of any accepted format and
 * row shape, a folder, a glob; `options.split` picks the split, default train): every row is
 * normalized to `{real, generated}`. Streamed: rows are not all held in memory (a .json input
 * excepted). The output is written atomically.
 *
 * @throws SpinNativeError `INVALID_ARGUMENT` for an output extension other than .jsonl/.parquet
 *   or a bad input row; `IO` for unreadable input or an unwritable output.
 */
export async function convertDataset(from: string, to: string, options: { split?: DataSplit; rowGroupSize?: number } = {}): Promise<ConvertResult> {
  const call = "convertDataset";
  const format = dataFormatOf(to);
  if (format !== "jsonl" && format !== "parquet") {
    throw new SpinNativeError(`${call}: the output '${to}' must end in .jsonl or .parquet`, "INVALID_ARGUMENT", call);
  }
  if (path.resolve(from) === path.resolve(to)) {
    throw new SpinNativeError(`${call}: input and output are the same file '${to}'`, "INVALID_ARGUMENT", call);
  }
  const rows = streamSpinRows(from, options.split ?? "train");
  const count =
    format === "jsonl"
      ? await writeJsonl(to, rows)
      : await writeParquet(to, rows, options.rowGroupSize === undefined ? {} : { rowGroupSize: options.rowGroupSize });
  return { file: to, rows: count, format };
}
