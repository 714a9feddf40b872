// Locating a dataset's files (docs/method.md, "Data": splits `train` and `test`, found by file
// name prefix). A source is one of:
//
// - a single data file (.jsonl, .json or .parquet; a named pipe with such a name is read as a
//   stream too): it is the split, whichever split is asked for;
// - a folder, searched in this order, the first tier that holds files wins:
//   1. `<dir>/<split>*.{jsonl,json,parquet}` (e.g. `train.jsonl`, `train_prefs-00000-of-00001.parquet`,
//      `test-0.jsonl`);
//   2. every data file under `<dir>/<split>/`, recursively (the SelfPlayGenerator's layout
//      `<out>/<split>/<split>-<k>.jsonl` / `<split>-<k>-<n>.parquet`);
//   3. `<dir>/data/<split>*.{jsonl,json,parquet}` (the Hugging Face Hub layout).
//   Tiers are not combined: a generator output folder holds both the merged `<out>/train.jsonl`
//   and its fractions under `<out>/train/`, and reading both would count every row twice.
// - a glob pattern (`*` any characters inside one path segment, `?` one character, `**` any
//   number of segments, including none). Of the files it matches, those marked with a split (the
//   file name starts with `train`/`test`, or a folder below the pattern's fixed prefix is named
//   `train`/`test`) are filtered to the asked split; when no match carries a split mark at all,
//   every match is the split (the pattern named the files, as a single file does).
//
// `*.meta.json` files (the generator's fraction metadata), hidden files and temp files of atomic
// writes (`*.tmp-*`) are never data. Files are returned in natural order (digit runs compare as
// numbers, so `train-2.jsonl` comes before `train-10.jsonl`, as the generator's fractions are
// numbered), which is deterministic across platforms and locales.
import type { Dirent } from "node:fs";
import { readdir, realpath, stat } from "node:fs/promises";
import path from "node:path";

import { SpinNativeError } from "../core/errors.js";

/** A dataset split. */
export type DataSplit = "train" | "test";

/** The data file extensions read and written, lower case. */
export const DATA_EXTENSIONS = [".jsonl", ".json", ".parquet"] as const;

/** A data file's format, from its extension. */
export type DataFormat = "jsonl" | "json" | "parquet";

const SPLITS: readonly DataSplit[] = ["train", "test"];
const CALL = "resolveSplitFiles";

function ioError(message: string, call = CALL): SpinNativeError {
  return new SpinNativeError(`${call}: ${message}`, "IO", call);
}

/** The format of a data file from its extension (case-insensitive), or null for any other file. */
export function dataFormatOf(file: string): DataFormat | null {
  const lower = file.toLowerCase();
  if (lower.endsWith(".jsonl")) return "jsonl";
  if (lower.endsWith(".meta.json")) return null;
  if (lower.endsWith(".json")) return "json";
  if (lower.endsWith(".parquet")) return "parquet";
  return null;
}

/** Whether a file name (no folder) is a data file: a data extension, not hidden, not a temp file or meta file. */
function isDataName(name: string): boolean {
  return !name.startsWith(".") && !name.includes(".tmp-") && dataFormatOf(name) !== null;
}

/**
 * Natural order: runs of digits compare by value, everything else by UTF-16 code unit, so the
 * order does not depend on the locale.
 */
export function naturalCompare(a: string, b: string): number {
  const re = /(\d+)|(\D+)/g;
  const pa = a.match(re) ?? [];
  const pb = b.match(re) ?? [];
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const x = pa[i]!;
    const y = pb[i]!;
    if (x === y) continue;
    const dx = /^\d/.test(x);
    const dy = /^\d/.test(y);
    if (dx && dy) {
      const nx = x.replace(/^0+(?=\d)/, "");
      const ny = y.replace(/^0+(?=\d)/, "");
      if (nx.length !== ny.length) return nx.length - ny.length;
      if (nx !== ny) return nx < ny ? -1 : 1;
      // equal values written with different zero padding: the shorter spelling first
      return x.length - y.length;
    }
    return x < y ? -1 : 1;
  }
  if (pa.length !== pb.length) return pa.length - pb.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

function sortFiles(files: string[]): string[] {
  return [...new Set(files)].sort(naturalCompare);
}

async function statOrNull(p: string): Promise<Awaited<ReturnType<typeof stat>> | null> {
  try {
    return await stat(p);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return null;
    throw ioError(`cannot read ${p}: ${(error as Error).message}`);
  }
}

async function entriesOf(dir: string): Promise<Dirent[]> {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return [];
    throw ioError(`cannot list ${dir}: ${(error as Error).message}`);
  }
}

/** Whether an entry is a file, following symbolic links. */
async function isFile(dir: string, entry: Dirent): Promise<boolean> {
  if (entry.isFile()) return true;
  if (!entry.isSymbolicLink()) return false;
  return (await statOrNull(path.join(dir, entry.name)))?.isFile() ?? false;
}

async function isDirectory(dir: string, entry: Dirent): Promise<boolean> {
  if (entry.isDirectory()) return true;
  if (!entry.isSymbolicLink()) return false;
  return (await statOrNull(path.join(dir, entry.name)))?.isDirectory() ?? false;
}

/** Data files directly in `dir` whose name starts with `prefix`. */
async function prefixedFiles(dir: string, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await entriesOf(dir)) {
    if (entry.name.startsWith(prefix) && isDataName(entry.name) && (await isFile(dir, entry))) out.push(path.join(dir, entry.name));
  }
  return out;
}

/**
 * Whether a folder was seen before (by its real path), marking it seen: a folder reached again
 * through a symbolic link (a cycle, or two links to one folder) is walked once.
 */
async function seenBefore(dir: string, visited: Set<string>): Promise<boolean> {
  let real: string;
  try {
    real = await realpath(dir);
  } catch {
    return true;
  }
  if (visited.has(real)) return true;
  visited.add(real);
  return false;
}

/** Every file under `dir`, recursively; hidden files and folders skipped, symbolic links followed once. */
async function allFiles(dir: string, visited = new Set<string>()): Promise<string[]> {
  if (await seenBefore(dir, visited)) return [];
  const out: string[] = [];
  for (const entry of await entriesOf(dir)) {
    if (entry.name.startsWith(".")) continue;
    if (await isDirectory(dir, entry)) out.push(...(await allFiles(path.join(dir, entry.name), visited)));
    else if (await isFile(dir, entry)) out.push(path.join(dir, entry.name));
  }
  return out;
}

/** Every data file under `dir`, recursively. */
async function allDataFiles(dir: string): Promise<string[]> {
  return (await allFiles(dir)).filter((f) => isDataName(path.basename(f)));
}

/** Whether a source string is a glob pattern (holds `*` or `?`). */
export function isGlobPattern(source: string): boolean {
  return /[*?]/.test(source);
}

/** A regular expression for one path segment of a glob (`*` and `?` do not cross `/`). */
function segmentRegExp(segment: string): RegExp {
  let re = "";
  for (const ch of segment) {
    if (ch === "*") re += "[^/]*";
    else if (ch === "?") re += "[^/]";
    else re += ch.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

/**
 * Files matching a glob pattern: `*` (within a segment), `?` (one character), `**` (zero or more
 * segments). Wildcards do not match names that start with a dot unless the pattern segment does.
 * Only files are returned (folders are walked, not matched). Paths keep the pattern's form
 * (relative stays relative).
 */
export async function globFiles(pattern: string): Promise<string[]> {
  const normalized = pattern.split(path.sep).join("/");
  const absolute = normalized.startsWith("/");
  const segments = normalized.split("/").filter((s) => s !== "" && s !== ".");
  let baseLength = 0;
  while (baseLength < segments.length - 1 && !isGlobPattern(segments[baseLength]!)) baseLength++;
  const base = (absolute ? "/" : "") + segments.slice(0, baseLength).join("/");
  const rest = segments.slice(baseLength);
  const out: string[] = [];
  const seen = new Set<string>();

  const walk = async (dir: string, i: number): Promise<void> => {
    const segment = rest[i];
    if (segment === undefined) return;
    const last = i === rest.length - 1;
    if (segment === "**") {
      // each real folder is expanded by a given ** once (symbolic link cycles end here)
      let real: string;
      try {
        real = await realpath(dir || ".");
      } catch {
        return;
      }
      const key = `${real}\0${i}`;
      if (seen.has(key)) return;
      seen.add(key);
      if (last) {
        // a trailing ** matches every file below
        out.push(...(await allFiles(dir || ".")));
        return;
      }
      await walk(dir, i + 1);
      for (const entry of await entriesOf(dir || ".")) {
        if (entry.name.startsWith(".")) continue;
        if (await isDirectory(dir || ".", entry)) await walk(dir ? path.join(dir, entry.name) : entry.name, i);
      }
      return;
    }
    if (!isGlobPattern(segment)) {
      const next = dir ? path.join(dir, segment) : segment;
      const st = await statOrNull(next);
      if (st === null) return;
      if (last) {
        if (st.isFile()) out.push(next);
      } else if (st.isDirectory()) {
        await walk(next, i + 1);
      }
      return;
    }
    const re = segmentRegExp(segment);
    for (const entry of await entriesOf(dir || ".")) {
      if (entry.name.startsWith(".") && !segment.startsWith(".")) continue;
      if (!re.test(entry.name)) continue;
      const next = dir ? path.join(dir, entry.name) : entry.name;
      if (last) {
        if (await isFile(dir || ".", entry)) out.push(next);
      } else if (await isDirectory(dir || ".", entry)) {
        await walk(next, i + 1);
      }
    }
  };
  await walk(base, 0);
  return sortFiles(out);
}

/** The split a path is marked with, relative to a glob's fixed base: by file-name prefix or by a folder named after the split. */
function splitMarks(file: string, base: string): Set<DataSplit> {
  const marks = new Set<DataSplit>();
  const name = path.basename(file);
  for (const s of SPLITS) if (name.startsWith(s)) marks.add(s);
  const rel = path.relative(base || ".", path.dirname(file));
  for (const part of rel.split(path.sep)) if ((SPLITS as readonly string[]).includes(part)) marks.add(part as DataSplit);
  return marks;
}

function globBase(pattern: string): string {
  const segments = pattern.split(path.sep).join("/").split("/");
  const fixed: string[] = [];
  for (const s of segments.slice(0, -1)) {
    if (isGlobPattern(s)) break;
    fixed.push(s);
  }
  return fixed.join("/") || (pattern.startsWith("/") ? "/" : ".");
}

function checkSplit(split: unknown, call: string): asserts split is DataSplit {
  if (split !== "train" && split !== "test") {
    throw new SpinNativeError(`${call}: split must be "train" or "test", got ${JSON.stringify(split)}`, "INVALID_ARGUMENT", call);
  }
}

/**
 * The data files of one split of a source (a file, a folder or a glob pattern; see the top of
 * this file for the rules), in natural order. Every returned file has a .jsonl, .json or
 * .parquet extension.
 *
 * @param source - A data file, a folder, or a glob pattern.
 * @param split - `"train"` or `"test"`.
 * @throws SpinNativeError `IO` when nothing matches (the message names the source and what was
 *   looked for) or a folder cannot be listed; `INVALID_ARGUMENT` for a split other than
 *   train/test, or a single file with an extension other than .jsonl/.json/.parquet.
 */
export async function resolveSplitFiles(source: string, split: DataSplit): Promise<string[]> {
  checkSplit(split, CALL);
  if (typeof source !== "string" || source === "") {
    throw new SpinNativeError(`${CALL}: source must be a non-empty path or glob pattern`, "INVALID_ARGUMENT", CALL);
  }
  const st = await statOrNull(source);
  if (st === null && isGlobPattern(source)) {
    const matches = (await globFiles(source)).filter((f) => isDataName(path.basename(f)));
    if (matches.length === 0) {
      throw ioError(`glob pattern '${source}' matches no .jsonl, .json or .parquet file`);
    }
    const base = globBase(source);
    const marked = matches.map((f) => ({ f, marks: splitMarks(f, base) }));
    if (marked.every((m) => m.marks.size === 0)) return matches;
    const chosen = marked.filter((m) => m.marks.has(split)).map((m) => m.f);
    if (chosen.length === 0) {
      throw ioError(
        `glob pattern '${source}' matches ${matches.length} data file(s), none of split '${split}' ` +
          `(no file name starting with '${split}' and no '${split}/' folder among them)`,
      );
    }
    return sortFiles(chosen);
  }
  if (st === null) throw ioError(`'${source}' does not exist (neither a file, a folder nor a glob pattern with * or ?)`);
  if (!st.isDirectory()) {
    // a regular file, or a FIFO / device (read as a stream)
    if (dataFormatOf(source) === null) {
      throw new SpinNativeError(
        `${CALL}: '${source}' is not a data file: the extension must be .jsonl, .json or .parquet`,
        "INVALID_ARGUMENT",
        CALL,
      );
    }
    return [source];
  }

  const tier1 = await prefixedFiles(source, split);
  if (tier1.length > 0) return sortFiles(tier1);
  const tier2 = await allDataFiles(path.join(source, split));
  if (tier2.length > 0) return sortFiles(tier2);
  const tier3 = await prefixedFiles(path.join(source, "data"), split);
  if (tier3.length > 0) return sortFiles(tier3);
  throw ioError(
    `no '${split}' data in folder '${source}': looked for ${split}*.jsonl, ${split}*.json, ${split}*.parquet ` +
      `in it, data files under ${path.join(source, split)}/, and ${split}* data files in ${path.join(source, "data")}/`,
  );
}
