// Reading data files as streams of raw rows, and a split of a source as SpinRows
// (docs/method.md, "Data"). Each raw row is converted by toSpinRow, which detects its shape per row.
//
// - JSON Lines (.jsonl): streamed line by line (lines cut at "\n", a "\r" before it dropped);
//   blank lines are skipped; a UTF-8 byte-order mark is ignored; a line that is not valid UTF-8
//   or not valid JSON is an error naming the file and its 1-based line number.
// - JSON (.json): NOT streamed, the whole file is read and parsed at once. Accepted: an array of
//   rows, an object with a `data` or `rows` array field, or any other single object (one row).
//   A .json file that is not one JSON value but JSON Lines (what `datasets.Dataset.to_json`
//   writes by default) is read as JSON Lines, errors naming lines. Bytes that are not valid
//   UTF-8 are an error naming the line.
// - Parquet (.parquet): streamed one row group at a time through hyparquet (the file is read by
//   byte ranges, so only the footer and one row group's column chunks are in memory at once;
//   a row group larger than memory is still too large). Nested
//   LIST<STRUCT<role, content>> columns come back as arrays of {role, content} objects. A string
//   that is not valid UTF-8 is an error naming the file and the row group's rows.
//
// Text is decoded strictly: a lenient decoder would put U+FFFD in place of the bad bytes and
// the run would train on it.
import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";

import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema, type AsyncBuffer, type FileMetaData } from "hyparquet";

import { SpinNativeError } from "../core/errors.js";
import { dataFormatOf, resolveSplitFiles, type DataSplit } from "./dataset-files.js";
import { toSpinRow, type SpinRow } from "./rows.js";

/** One raw row of a data file: the parsed value, the file, its 0-based index among the file's rows and, for JSON Lines, its 1-based line. */
export interface RawRow {
  raw: unknown;
  file: string;
  row: number;
  line?: number;
}

/** Options of {@link readRows}. */
export interface RawReadOptions {
  /**
   * Parquet only: read just these top-level columns (those the file has); when the file has
   * none of them, every column is read. Default: every column. JSON and JSON Lines rows are
   * always whole.
   */
  columns?: readonly string[];
}

/**
 * The columns toSpinRow looks at. {@link streamSpinRows} reads only these from parquet files
 * (when a file has any of them), so unrelated columns (scores, ids, embeddings) are neither
 * decoded nor held.
 */
export const ROW_SHAPE_COLUMNS: readonly string[] = ["real", "generated", "prompt", "chosen", "rejected", "messages", "response", "completion"];

/** Options of {@link readSpinRows} and {@link streamSpinRows}. */
export interface ReadRowsOptions {
  /** Stop after this many rows (over all files of the split). Default: every row. */
  limit?: number;
}

const CALL = "readRows";

function invalid(message: string, call = CALL): SpinNativeError {
  return new SpinNativeError(message, "INVALID_ARGUMENT", call);
}

function ioError(file: string, error: unknown, call = CALL): SpinNativeError {
  if (error instanceof SpinNativeError) return error;
  return new SpinNativeError(`cannot read ${file}: ${(error as Error).message}`, "IO", call);
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function notUtf8(file: string, line: number): SpinNativeError {
  return invalid(`${file}: line ${line} is not valid UTF-8`);
}

/** A whole file's text, decoded strictly; bytes that are not UTF-8 are an error naming their line. */
function decodeText(bytes: Uint8Array, file: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    let start = 0;
    for (let line = 1; ; line++) {
      const end = bytes.indexOf(0x0a, start);
      try {
        utf8.decode(bytes.subarray(start, end < 0 ? bytes.length : end));
      } catch {
        throw notUtf8(file, line);
      }
      start = end + 1;
    }
  }
}

function parseLine(text: string, file: string, line: number): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw invalid(`${file}: line ${line} is not valid JSON: ${(error as Error).message}`);
  }
}

/** JSON Lines, streamed: bytes are cut into lines first, so each line is decoded strictly on its own. */
async function* readJsonl(file: string): AsyncGenerator<RawRow> {
  // an open error (missing file, permissions) surfaces through the stream's iterator
  const stream = createReadStream(file);
  let line = 0;
  let row = 0;
  let pending: Buffer[] = [];
  const rowOf = (bytes: Buffer): RawRow | null => {
    line++;
    let text: string;
    try {
      text = utf8.decode(bytes.at(-1) === 0x0d ? bytes.subarray(0, -1) : bytes);
    } catch {
      throw notUtf8(file, line);
    }
    if (line === 1 && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    if (text.trim() === "") return null;
    return { raw: parseLine(text, file, line), file, row: row++, line };
  };
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      let start = 0;
      for (let end = chunk.indexOf(0x0a); end >= 0; end = chunk.indexOf(0x0a, start)) {
        const piece = chunk.subarray(start, end);
        const next = rowOf(pending.length === 0 ? piece : Buffer.concat([...pending, piece]));
        pending = [];
        if (next) yield next;
        start = end + 1;
      }
      if (start < chunk.length) pending.push(chunk.subarray(start));
    }
    if (pending.length > 0) {
      const last = rowOf(Buffer.concat(pending));
      if (last) yield last;
    }
  } catch (error) {
    throw ioError(file, error);
  } finally {
    stream.destroy();
  }
}

/** Lines of a whole text as JSON Lines rows. */
function* jsonlRowsOf(text: string, file: string): Generator<RawRow> {
  const lines = text.split(/\r?\n/);
  let row = 0;
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.trim() === "") continue;
    yield { raw: parseLine(lines[i]!, file, i + 1), file, row: row++, line: i + 1 };
  }
}

/** A JSON file, parsed whole (not streamed). */
async function* readJson(file: string): AsyncGenerator<RawRow> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (error) {
    throw ioError(file, error);
  }
  let text = decodeText(bytes, file);
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    // Not one JSON value: JSON Lines under a .json name, when its first line parses.
    const first = text.split(/\r?\n/).find((l) => l.trim() !== "");
    let firstParses = false;
    try {
      if (first !== undefined) {
        JSON.parse(first);
        firstParses = true;
      }
    } catch {
      // not JSON Lines either
    }
    if (!firstParses) throw invalid(`${file} is not valid JSON: ${(error as Error).message}`);
    yield* jsonlRowsOf(text, file);
    return;
  }
  let rows: unknown[];
  if (Array.isArray(value)) {
    rows = value;
  } else if (typeof value === "object" && value !== null && Array.isArray((value as Record<string, unknown>).data)) {
    rows = (value as { data: unknown[] }).data;
  } else if (typeof value === "object" && value !== null && Array.isArray((value as Record<string, unknown>).rows)) {
    rows = (value as { rows: unknown[] }).rows;
  } else if (typeof value === "object" && value !== null) {
    rows = [value];
  } else {
    throw invalid(`${file} must hold an array of rows, an object with a 'data' or 'rows' array, or one row object; it holds a ${typeof value}`);
  }
  for (let i = 0; i < rows.length; i++) yield { raw: rows[i], file, row: i };
}

/** A parquet string column value that is not UTF-8 (hyparquet decodes leniently by default). */
class NotUtf8 extends Error {}

const STRICT_PARSERS = {
  stringFromBytes(bytes: Uint8Array | undefined): string | undefined {
    if (!bytes) return undefined;
    try {
      return utf8.decode(bytes);
    } catch {
      throw new NotUtf8();
    }
  },
};

/** Parquet, one row group at a time. */
async function* readParquet(file: string, wanted: readonly string[] | undefined): AsyncGenerator<RawRow> {
  let buffer: AsyncBuffer;
  let metadata: FileMetaData;
  try {
    buffer = await asyncBufferFromFile(file);
    metadata = await parquetMetadataAsync(buffer);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== undefined) throw ioError(file, error);
    throw new SpinNativeError(`${file} is not a readable parquet file: ${(error as Error).message}`, "IO", CALL);
  }
  let columns: string[] | undefined;
  if (wanted !== undefined) {
    const present = parquetSchema(metadata).children.map((c) => c.element.name);
    columns = present.filter((name) => wanted.includes(name));
    if (columns.length === 0) columns = undefined;
  }
  let start = 0;
  for (const group of metadata.row_groups) {
    const end = start + Number(group.num_rows);
    if (end === start) continue;
    let rows: Record<string, unknown>[];
    try {
      rows = await parquetReadObjects({ file: buffer, metadata, rowStart: start, rowEnd: end, rowFormat: "object", parsers: STRICT_PARSERS, ...(columns ? { columns } : {}) });
    } catch (error) {
      if (error instanceof NotUtf8) throw invalid(`${file}: rows ${start}..${end - 1} hold a string that is not valid UTF-8`);
      throw new SpinNativeError(`${file}: cannot read rows ${start}..${end - 1}: ${(error as Error).message}`, "IO", CALL);
    }
    for (let i = 0; i < rows.length; i++) yield { raw: rows[i], file, row: start + i };
    start = end;
  }
}

/**
 * The raw rows of one data file, by extension: .jsonl (streamed line by line), .json (parsed
 * whole) or .parquet (streamed by row group). Rows are yielded as parsed, unvalidated; `row` is
 * the 0-based index among the file's rows (blank JSON Lines lines are not rows).
 *
 * @throws SpinNativeError `INVALID_ARGUMENT` for a line that is not valid UTF-8 or not valid
 *   JSON (naming the file and line), a .json file that is not JSON, a parquet string that is not
 *   UTF-8 (naming the rows), or an unsupported extension; `IO` for a file that
 *   cannot be read or a parquet file that cannot be decoded.
 */
export async function* readRows(file: string, options: RawReadOptions = {}): AsyncGenerator<RawRow> {
  const format = dataFormatOf(file);
  if (format === null) throw invalid(`${file}: unsupported data file extension; expected .jsonl, .json or .parquet`);
  if (format === "jsonl") {
    // stat first, so a missing file is an IO error before any row
    await stat(file).catch((error: unknown) => {
      throw ioError(file, error);
    });
    yield* readJsonl(file);
  } else if (format === "json") {
    yield* readJson(file);
  } else {
    yield* readParquet(file, options.columns);
  }
}

function checkLimit(limit: unknown, call: string): number {
  if (limit === undefined) return Infinity;
  if (typeof limit !== "number" || !Number.isInteger(limit) || limit < 0) {
    throw invalid(`${call}: limit must be a non-negative integer, got ${String(limit)}`, call);
  }
  return limit;
}

/**
 * The SpinRows of one split of a source, streamed: the split's files (see
 * {@link resolveSplitFiles}) in order, each row converted by {@link toSpinRow} (the shape is
 * detected per row). Nothing is read beyond what the consumer pulls (plus one parquet row group).
 * From parquet files only the {@link ROW_SHAPE_COLUMNS} are read (all columns when a file has
 * none of them, so the error lists what it has).
 *
 * @param source - A data file, a folder with `train*`/`test*` files or `<split>/` subfolders, or a glob.
 * @param split - `"train"` (default) or `"test"`.
 * @throws SpinNativeError `INVALID_ARGUMENT` for a row that fits no shape (naming the file, its
 *   line for JSON Lines, and the 0-based row) or a bad JSON line; `IO` when no file matches.
 */
export async function* streamSpinRows(source: string, split: DataSplit = "train", options: ReadRowsOptions = {}): AsyncGenerator<SpinRow> {
  const limit = checkLimit(options.limit, "streamSpinRows");
  if (limit === 0) return;
  const files = await resolveSplitFiles(source, split);
  let count = 0;
  for (const file of files) {
    for await (const { raw, row, line } of readRows(file, { columns: ROW_SHAPE_COLUMNS })) {
      yield toSpinRow(raw, { file, row, ...(line !== undefined ? { line } : {}) });
      if (++count >= limit) return;
    }
  }
}

/**
 * Every SpinRow of one split of a source (or the first `limit`), in file order. See
 * {@link streamSpinRows}.
 */
export async function readSpinRows(source: string, split: DataSplit = "train", options: ReadRowsOptions = {}): Promise<SpinRow[]> {
  const out: SpinRow[] = [];
  for await (const row of streamSpinRows(source, split, options)) out.push(row);
  return out;
}
