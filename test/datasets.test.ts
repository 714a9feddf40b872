// Dataset I/O (lib/data/dataset-files.ts, dataset-read.ts, dataset-write.ts, mixer.ts): files
// written by the writers read back identically (jsonl, json, parquet); a parquet file shaped like
// the original's released SPIN datasets (real/generated as list<struct<content, role>>, built
// here with hyparquet-writer) read into SpinRows; TRL, UltraChat and {prompt, response} files;
// split detection in folders (train*/test* prefixes, <split>/ subfolders, data/) and globs;
// errors naming file and row/line; streaming (rows yielded before a file is complete, later
// parquet row groups not decoded); the mixer's arithmetic and seeded shuffle; conversion.
import { execFileSync } from "node:child_process";
import { constants, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

import { parquetMetadata, parquetSchema } from "hyparquet";
import { parquetWriteBuffer } from "hyparquet-writer";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { globFiles, naturalCompare, resolveSplitFiles } from "../lib/data/dataset-files.js";
import { ROW_SHAPE_COLUMNS, readRows, readSpinRows, streamSpinRows } from "../lib/data/dataset-read.js";
import { appendJsonl, convertDataset, SPIN_PARQUET_SCHEMA, writeJsonl, writeParquet } from "../lib/data/dataset-write.js";
import { fractionCount, mixDatasetFiles, mixDatasets, seededShuffle } from "../lib/data/mixer.js";
import { type SpinRow, identicalPairShare } from "../lib/data/rows.js";
import { SpinNativeError } from "../lib/core/errors.js";

let tmp: string;
let counter = 0;
/** A fresh folder under the test's temp dir. */
function fresh(name = "d"): string {
  const dir = path.join(tmp, `${name}-${counter++}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), "spin-datasets-"));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

function pairRow(q: string, a: string, g = ""): SpinRow {
  return {
    real: [
      { role: "user", content: q },
      { role: "assistant", content: a },
    ],
    generated: [
      { role: "user", content: q },
      { role: "assistant", content: g },
    ],
  };
}

/** Rows with a system prompt, several turns, unicode, quotes and newlines, and an empty generated answer. */
const ROWS: SpinRow[] = [
  pairRow("What is 2+2?", "4", "5"),
  {
    real: [
      { role: "system", content: "You are terse." },
      { role: "user", content: "Hi" },
      { role: "assistant", content: "Hello." },
      { role: "user", content: 'Say "ünïcödé" 🙂\nand a newline' },
      { role: "assistant", content: "ünïcödé 🙂" },
    ],
    generated: [
      { role: "system", content: "You are terse." },
      { role: "user", content: "Hi" },
      { role: "assistant", content: "Hello." },
      { role: "user", content: 'Say "ünïcödé" 🙂\nand a newline' },
      { role: "assistant", content: "" },
    ],
  },
  pairRow("", "an empty prompt is still a prompt", "x"),
];

function many(n: number, tag = "q"): SpinRow[] {
  return Array.from({ length: n }, (_, i) => pairRow(`${tag}${i}`, `a${i}`, `g${i}`));
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function errorOf(p: Promise<unknown> | (() => unknown)): Promise<SpinNativeError> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (error) {
    expect(error).toBeInstanceOf(SpinNativeError);
    return error as SpinNativeError;
  }
  throw new Error("expected a SpinNativeError");
}

function jsonl(file: string, rows: unknown[]): void {
  writeFileSync(file, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
}

// ---- writers and readers round trip ----------------------------------------------------------

describe("round trips", () => {
  test("jsonl: writeJsonl then readSpinRows gives the rows back, extra message fields included", async () => {
    const dir = fresh();
    const file = path.join(dir, "rows.jsonl");
    const rows = [...ROWS, { ...pairRow("n", "m"), real: [{ role: "user", content: "n", name: "bob" }, { role: "assistant", content: "m" }] }];
    expect(await writeJsonl(file, rows)).toBe(rows.length);
    expect(await readSpinRows(file)).toEqual(rows);
    // exactly one {real, generated} object per line, no temp file left
    const lines = readFileSync(file, "utf8").split("\n");
    expect(lines).toHaveLength(rows.length + 1);
    expect(Object.keys(JSON.parse(lines[0]!))).toEqual(["real", "generated"]);
    expect(readdirSync(dir)).toEqual(["rows.jsonl"]);
  });

  test("jsonl from an async iterable; a failing source leaves the old file untouched", async () => {
    const file = path.join(fresh(), "rows.jsonl");
    async function* gen(): AsyncGenerator<SpinRow> {
      yield* ROWS;
    }
    await writeJsonl(file, gen());
    const before = readFileSync(file, "utf8");
    async function* failing(): AsyncGenerator<SpinRow> {
      yield ROWS[0]!;
      throw new Error("source broke");
    }
    await expect(writeJsonl(file, failing())).rejects.toThrow(/source broke/);
    expect(readFileSync(file, "utf8")).toBe(before);
    expect(readdirSync(path.dirname(file))).toEqual(["rows.jsonl"]);
  });

  test("json: an array, {data: [...]}, {rows: [...]}, one object, and JSON Lines under a .json name", async () => {
    const dir = fresh();
    const plain = ROWS.map((r) => ({ real: r.real, generated: r.generated }));
    writeFileSync(path.join(dir, "array.json"), JSON.stringify(plain, null, 4));
    writeFileSync(path.join(dir, "data.json"), JSON.stringify({ version: 1, data: plain }));
    writeFileSync(path.join(dir, "rows.json"), JSON.stringify({ rows: plain }));
    writeFileSync(path.join(dir, "one.json"), JSON.stringify(plain[1]));
    jsonl(path.join(dir, "lines.json"), plain);
    for (const name of ["array.json", "data.json", "rows.json", "lines.json"]) {
      expect(await readSpinRows(path.join(dir, name)), name).toEqual(ROWS);
    }
    expect(await readSpinRows(path.join(dir, "one.json"))).toEqual([ROWS[1]]);
    writeFileSync(path.join(dir, "broken.json"), '[{"real": [');
    const e = await errorOf(readSpinRows(path.join(dir, "broken.json")));
    expect(e.code).toBe("INVALID_ARGUMENT");
    expect(e.message).toContain("broken.json is not valid JSON");
  });

  test("parquet: writeParquet then readSpinRows gives the rows back, over several row groups", async () => {
    const dir = fresh();
    const file = path.join(dir, "rows.parquet");
    const rows = [...ROWS, ...many(25)];
    expect(await writeParquet(file, rows, { rowGroupSize: 7 })).toBe(rows.length);
    expect(await readSpinRows(file)).toEqual(rows);
    const metadata = parquetMetadata(new Uint8Array(readFileSync(file)).buffer);
    expect(metadata.row_groups.map((g) => Number(g.num_rows))).toEqual([7, 7, 7, 7]);
    expect(readdirSync(dir)).toEqual(["rows.parquet"]);
  });

  test("parquet schema: real and generated are LIST<STRUCT<content: STRING, role: STRING>>", async () => {
    const file = path.join(fresh(), "schema.parquet");
    await writeParquet(file, ROWS);
    const tree = parquetSchema(parquetMetadata(new Uint8Array(readFileSync(file)).buffer));
    expect(tree.children.map((c) => c.element.name)).toEqual(["real", "generated"]);
    for (const column of tree.children) {
      expect(column.element.converted_type).toBe("LIST");
      const list = column.children[0]!;
      expect(list.element.repetition_type).toBe("REPEATED");
      const element = list.children[0]!;
      expect(element.children.map((c) => [c.element.name, c.element.type, c.element.converted_type])).toEqual([
        ["content", "BYTE_ARRAY", "UTF8"],
        ["role", "BYTE_ARRAY", "UTF8"],
      ]);
    }
  });

  test("parquet: extra message fields are not stored; an empty dataset is a valid file", async () => {
    const dir = fresh();
    const withName = { ...pairRow("n", "m"), real: [{ role: "user", content: "n", name: "bob" }, { role: "assistant", content: "m" }] };
    await writeParquet(path.join(dir, "x.parquet"), [withName]);
    expect(await readSpinRows(path.join(dir, "x.parquet"))).toEqual([pairRow("n", "m")]);
    expect(await writeParquet(path.join(dir, "empty.parquet"), [])).toBe(0);
    expect(await readSpinRows(path.join(dir, "empty.parquet"))).toEqual([]);
  });

  test("conversion jsonl → parquet → jsonl is lossless for role/content rows; other shapes are normalized", async () => {
    const dir = fresh();
    const source = path.join(dir, "source.jsonl");
    await writeJsonl(source, ROWS);
    expect(await convertDataset(source, path.join(dir, "out", "mid.parquet"))).toEqual({ file: path.join(dir, "out", "mid.parquet"), rows: ROWS.length, format: "parquet" });
    await convertDataset(path.join(dir, "out", "mid.parquet"), path.join(dir, "back.jsonl"));
    expect(readFileSync(path.join(dir, "back.jsonl"), "utf8")).toBe(readFileSync(source, "utf8"));

    // a TRL file becomes {real, generated}
    const trl = path.join(dir, "trl.jsonl");
    jsonl(trl, [{ prompt: "p", chosen: "good", rejected: "bad" }]);
    await convertDataset(trl, path.join(dir, "trl.parquet"));
    expect(await readSpinRows(path.join(dir, "trl.parquet"))).toEqual([pairRow("p", "good", "bad")]);

    // a folder source with a split
    const folder = fresh();
    await writeJsonl(path.join(folder, "train.jsonl"), many(3, "t"));
    await writeJsonl(path.join(folder, "test.jsonl"), many(2, "e"));
    expect((await convertDataset(folder, path.join(dir, "test.parquet"), { split: "test" })).rows).toBe(2);
    expect(await readSpinRows(path.join(dir, "test.parquet"))).toEqual(many(2, "e"));

    const bad = await errorOf(convertDataset(source, path.join(dir, "out.txt")));
    expect(bad.code).toBe("INVALID_ARGUMENT");
    expect(bad.message).toContain("out.txt");
    expect((await errorOf(convertDataset(source, source))).code).toBe("INVALID_ARGUMENT");
  });

  test("appendJsonl appends with fsync, adds a missing final newline, refuses a torn last line", async () => {
    const dir = fresh();
    const file = path.join(dir, "a.jsonl");
    expect(await appendJsonl(file, [ROWS[0]!])).toBe(1);
    await appendJsonl(file, ROWS.slice(1));
    expect(await readSpinRows(file)).toEqual(ROWS);

    const noNewline = path.join(dir, "b.jsonl");
    writeFileSync(noNewline, JSON.stringify(ROWS[0]));
    await appendJsonl(noNewline, [ROWS[1]!]);
    expect(await readSpinRows(noNewline)).toEqual(ROWS.slice(0, 2));

    const torn = path.join(dir, "c.jsonl");
    writeFileSync(torn, JSON.stringify(ROWS[0]) + "\n" + JSON.stringify(ROWS[1]).slice(0, 20));
    const before = readFileSync(torn, "utf8");
    const e = await errorOf(appendJsonl(torn, [ROWS[2]!]));
    expect(e.code).toBe("IO");
    expect(e.message).toMatch(/c\.jsonl ends with a torn line/);
    expect(readFileSync(torn, "utf8")).toBe(before);
  });
});

// ---- the original's parquet and other row shapes ---------------------------------------------

describe("row shapes", () => {
  test("a parquet file shaped like the released SPIN datasets (list<struct<content, role>>, pyarrow layout) reads into SpinRows", async () => {
    // UCLA-AGI/SPIN_iter0 train_prefs-00000-of-00001.parquet: columns real and generated, each
    // list<struct<content: string, role: string>>, in pyarrow's 3-level list layout. Built here
    // with hyparquet-writer from an explicit schema, plus an unrelated column the reader ignores.
    const message = (name: string) => [
      { name, repetition_type: "OPTIONAL" as const, converted_type: "LIST" as const, num_children: 1 },
      { name: "list", repetition_type: "REPEATED" as const, num_children: 1 },
      { name: "element", repetition_type: "OPTIONAL" as const, num_children: 2 },
      { name: "content", repetition_type: "OPTIONAL" as const, type: "BYTE_ARRAY" as const, converted_type: "UTF8" as const },
      { name: "role", repetition_type: "OPTIONAL" as const, type: "BYTE_ARRAY" as const, converted_type: "UTF8" as const },
    ];
    const n = 30;
    const real = Array.from({ length: n }, (_, i) => [
      { content: `prompt ${i}`, role: "user" },
      { content: `ground truth ${i}`, role: "assistant" },
    ]);
    const generated = Array.from({ length: n }, (_, i) => [
      { content: `prompt ${i}`, role: "user" },
      { content: `model answer ${i}`, role: "assistant" },
    ]);
    const buffer = parquetWriteBuffer({
      columnData: [
        { name: "real", data: real },
        { name: "generated", data: generated },
        { name: "prompt_id", data: real.map((_, i) => `id-${i}`) },
      ],
      schema: [
        { name: "schema", num_children: 3 },
        ...message("real"),
        ...message("generated"),
        { name: "prompt_id", repetition_type: "OPTIONAL", type: "BYTE_ARRAY", converted_type: "UTF8" },
      ],
      rowGroupSize: 8,
    });
    const dir = fresh("spin_iter0");
    mkdirSync(path.join(dir, "data"));
    writeFileSync(path.join(dir, "data", "train_prefs-00000-of-00001.parquet"), new Uint8Array(buffer));
    writeFileSync(path.join(dir, "data", "test_prefs-00000-of-00001.parquet"), new Uint8Array(buffer));
    const rows = await readSpinRows(dir, "train");
    expect(rows).toHaveLength(n);
    expect(rows[17]).toEqual(pairRow("prompt 17", "ground truth 17", "model answer 17"));
    expect(await readSpinRows(dir, "test", { limit: 3 })).toEqual(rows.slice(0, 3));
    // raw rows hold every column; with columns, only those asked for
    const file = path.join(dir, "data", "train_prefs-00000-of-00001.parquet");
    const [raw] = await collect(readRows(file));
    expect(Object.keys(raw!.raw as object).sort()).toEqual(["generated", "prompt_id", "real"]);
    const [shaped] = await collect(readRows(file, { columns: ROW_SHAPE_COLUMNS }));
    expect(Object.keys(shaped!.raw as object).sort()).toEqual(["generated", "real"]);
  });

  test("TRL {prompt, chosen, rejected} (strings and conversational), UltraChat {messages}, {prompt, response}, {prompt, completion}", async () => {
    const dir = fresh();
    jsonl(path.join(dir, "trl.jsonl"), [
      { prompt: "p", chosen: "good", rejected: "bad", score_chosen: 9, score_rejected: 1 },
      {
        prompt: [{ role: "user", content: "p2" }],
        chosen: [{ role: "assistant", content: "c2" }],
        rejected: [{ role: "assistant", content: "r2" }],
      },
      {
        chosen: [{ role: "user", content: "p3" }, { role: "assistant", content: "c3" }],
        rejected: [{ role: "user", content: "p3" }, { role: "assistant", content: "r3" }],
      },
    ]);
    expect(await readSpinRows(path.join(dir, "trl.jsonl"))).toEqual([pairRow("p", "good", "bad"), pairRow("p2", "c2", "r2"), pairRow("p3", "c3", "r3")]);

    jsonl(path.join(dir, "ultrachat.jsonl"), [
      {
        prompt_id: "x",
        messages: [
          { role: "system", content: "sys" },
          { role: "user", content: "u1" },
          { role: "assistant", content: "a1" },
          { role: "user", content: "u2" },
          { role: "assistant", content: "a2" },
        ],
      },
    ]);
    const [chat] = await readSpinRows(path.join(dir, "ultrachat.jsonl"));
    expect(chat!.real.map((m) => m.content)).toEqual(["sys", "u1", "a1", "u2", "a2"]);
    expect(chat!.generated.map((m) => m.content)).toEqual(["sys", "u1", "a1", "u2", ""]);

    jsonl(path.join(dir, "pr.jsonl"), [{ prompt: "q", response: "r" }, { prompt: "q2", completion: "r2" }]);
    expect(await readSpinRows(path.join(dir, "pr.jsonl"))).toEqual([pairRow("q", "r"), pairRow("q2", "r2")]);

    // shapes mixed in one parquet file are detected per row too (here: a prompt/response parquet)
    const buffer = parquetWriteBuffer({
      columnData: [
        { name: "prompt", data: ["q", "q2"], type: "STRING" },
        { name: "response", data: ["r", "r2"], type: "STRING" },
      ],
    });
    writeFileSync(path.join(dir, "pr.parquet"), new Uint8Array(buffer));
    expect(await readSpinRows(path.join(dir, "pr.parquet"))).toEqual([pairRow("q", "r"), pairRow("q2", "r2")]);
  });

  test("a row that fits no shape is an error naming the file, line and row", async () => {
    const dir = fresh();
    const file = path.join(dir, "bad-row.jsonl");
    writeFileSync(file, [JSON.stringify({ prompt: "a", response: "b" }), "", JSON.stringify({ question: "?", answer: "!" })].join("\n") + "\n");
    const e = await errorOf(readSpinRows(file));
    expect(e.code).toBe("INVALID_ARGUMENT");
    expect(e.message).toContain(file);
    expect(e.message).toContain("line 3");
    expect(e.message).toContain("row 1");
    expect(e.message).toContain("question");

    const pq = path.join(dir, "bad-row.parquet");
    writeFileSync(pq, new Uint8Array(parquetWriteBuffer({ columnData: [{ name: "question", data: ["a", "b"], type: "STRING" }] })));
    const e2 = await errorOf(readSpinRows(pq));
    expect(e2.message).toContain(`${pq}: row 0`);
    expect(e2.message).toContain("question"); // no row-shape column: every column read, and named
  });

  test("a line that is not JSON is an error naming the file and its 1-based line", async () => {
    const file = path.join(fresh(), "bad-json.jsonl");
    writeFileSync(file, `${JSON.stringify({ prompt: "a", response: "b" })}\n\n{"prompt": "a", "resp\n`);
    const e = await errorOf(readSpinRows(file));
    expect(e.code).toBe("INVALID_ARGUMENT");
    expect(e.message).toContain(`${file}: line 3 is not valid JSON`);
    // the rows before it are read
    expect(await readSpinRows(file, "train", { limit: 1 })).toEqual([pairRow("a", "b")]);
  });

  test("CRLF line ends and a byte-order mark are accepted", async () => {
    const file = path.join(fresh(), "crlf.jsonl");
    writeFileSync(file, "\ufeff" + ROWS.map((r) => JSON.stringify(r)).join("\r\n") + "\r\n");
    expect(await readSpinRows(file)).toEqual(ROWS);
  });

  test("missing files and unsupported extensions", async () => {
    const dir = fresh();
    const missing = await errorOf(readSpinRows(path.join(dir, "nope.jsonl")));
    expect(missing.code).toBe("IO");
    expect(missing.message).toContain("nope.jsonl");
    expect((await errorOf(collect(readRows(path.join(dir, "nope.jsonl"))))).code).toBe("IO");
    writeFileSync(path.join(dir, "rows.csv"), "a,b\n");
    const csv = await errorOf(readSpinRows(path.join(dir, "rows.csv")));
    expect(csv.code).toBe("INVALID_ARGUMENT");
    expect(csv.message).toContain(".jsonl, .json or .parquet");
    writeFileSync(path.join(dir, "junk.parquet"), "not parquet at all");
    const junk = await errorOf(readSpinRows(path.join(dir, "junk.parquet")));
    expect(junk.code).toBe("IO");
    expect(junk.message).toContain("junk.parquet");
  });
});

// ---- locating files --------------------------------------------------------------------------

describe("split files", () => {
  test("a folder: train*/test* by file-name prefix, in natural order, meta and temp files ignored", async () => {
    const dir = fresh();
    for (const name of ["train-10.jsonl", "train-2.jsonl", "train_prefs-00000-of-00001.parquet", "test.jsonl", "other.jsonl", "train-0.meta.json", "train.jsonl.tmp-1-ab", ".train-hidden.jsonl", "train-notes.txt"]) {
      writeFileSync(path.join(dir, name), "");
    }
    expect(await resolveSplitFiles(dir, "train")).toEqual(
      ["train-2.jsonl", "train-10.jsonl", "train_prefs-00000-of-00001.parquet"].map((n) => path.join(dir, n)),
    );
    expect(await resolveSplitFiles(dir, "test")).toEqual([path.join(dir, "test.jsonl")]);
  });

  test("a folder with <split>/ subfolders (the generator's layout); merged top-level files take precedence", async () => {
    const dir = fresh("gen");
    for (const split of ["train", "test"] as const) {
      mkdirSync(path.join(dir, split));
      for (const k of [0, 1, 2, 10]) await writeJsonl(path.join(dir, split, `${split}-${k}.jsonl`), [pairRow(`${split}${k}`, "a")]);
      writeFileSync(path.join(dir, split, `${split}-0.meta.json`), "{}");
    }
    expect(await resolveSplitFiles(dir, "train")).toEqual([0, 1, 2, 10].map((k) => path.join(dir, "train", `train-${k}.jsonl`)));
    expect((await readSpinRows(dir, "test")).map((r) => r.real[0]!.content)).toEqual(["test0", "test1", "test2", "test10"]);
    // parquet parts of a fraction, in order
    const pq = fresh("genpq");
    mkdirSync(path.join(pq, "train"));
    for (const [k, n] of [[0, 0], [0, 1], [1, 0]] as const) {
      await writeParquet(path.join(pq, "train", `train-${k}-${String(n).padStart(5, "0")}.parquet`), [pairRow(`${k}/${n}`, "a")]);
    }
    expect((await readSpinRows(pq)).map((r) => r.real[0]!.content)).toEqual(["0/0", "0/1", "1/0"]);
    // after mergeFractions, <out>/train.jsonl is read instead of the fractions (not both)
    await writeJsonl(path.join(dir, "train.jsonl"), [pairRow("merged", "a")]);
    expect(await resolveSplitFiles(dir, "train")).toEqual([path.join(dir, "train.jsonl")]);
  });

  test("a single file is the split whichever split is asked", async () => {
    const file = path.join(fresh(), "anything.jsonl");
    await writeJsonl(file, ROWS);
    expect(await resolveSplitFiles(file, "test")).toEqual([file]);
    expect(await readSpinRows(file, "test")).toEqual(ROWS);
  });

  test("nothing found: an IO error naming the source and what was looked for", async () => {
    const dir = fresh();
    writeFileSync(path.join(dir, "train.jsonl"), "");
    const e = await errorOf(resolveSplitFiles(dir, "test"));
    expect(e.code).toBe("IO");
    expect(e.message).toContain(dir);
    expect(e.message).toContain("test*.jsonl");
    expect(e.message).toContain(path.join(dir, "test"));
    const missing = await errorOf(resolveSplitFiles(path.join(dir, "nothing-here"), "train"));
    expect(missing.code).toBe("IO");
    expect(missing.message).toContain("nothing-here");
    const glob = await errorOf(resolveSplitFiles(path.join(dir, "*.parquet"), "train"));
    expect(glob.code).toBe("IO");
    expect(glob.message).toContain("*.parquet");
    expect((await errorOf(resolveSplitFiles(dir, "validation" as "train"))).code).toBe("INVALID_ARGUMENT");
  });

  test("globs: *, ?, ** and split filtering by file-name prefix or split folder", async () => {
    const dir = fresh("glob");
    const files = [
      "a/train-0.jsonl",
      "a/test-0.jsonl",
      "a/b/train-1.parquet",
      "a/b/c/train-2.jsonl",
      "a/train/part-0.jsonl",
      "a/test/part-0.jsonl",
      "a/.hidden/train-9.jsonl",
      "a/notes.txt",
      "x/mine-1.jsonl",
      "x/mine-2.jsonl",
    ];
    for (const f of files) {
      mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
      writeFileSync(path.join(dir, f), "");
    }
    const at = (...names: string[]) => names.map((n) => path.join(dir, n));
    expect(await resolveSplitFiles(path.join(dir, "a/**/*.jsonl"), "train")).toEqual(at("a/b/c/train-2.jsonl", "a/train-0.jsonl", "a/train/part-0.jsonl"));
    expect(await resolveSplitFiles(path.join(dir, "a/**/*"), "test")).toEqual(at("a/test-0.jsonl", "a/test/part-0.jsonl"));
    expect(await resolveSplitFiles(path.join(dir, "a/*/train-?.*"), "train")).toEqual(at("a/b/train-1.parquet"));
    // no split marks: every match is the split
    expect(await resolveSplitFiles(path.join(dir, "x/mine-*.jsonl"), "test")).toEqual(at("x/mine-1.jsonl", "x/mine-2.jsonl"));
    // relative patterns stay relative
    const rel = path.relative(process.cwd(), path.join(dir, "x"));
    expect(await globFiles(`${rel}/*.jsonl`)).toEqual([`${rel}/mine-1.jsonl`, `${rel}/mine-2.jsonl`]);
    // a symbolic link cycle is walked once; symlinked files (the Hub cache's layout) are followed
    symlinkSync(path.join(dir, "a"), path.join(dir, "a", "b", "loop"));
    symlinkSync(path.join(dir, "x", "mine-1.jsonl"), path.join(dir, "a", "train-link.jsonl"));
    const looped = await resolveSplitFiles(path.join(dir, "a/**/*.jsonl"), "train");
    expect(looped).toContain(path.join(dir, "a/train-link.jsonl"));
    expect(looped.length).toBeLessThan(20);
    expect(await resolveSplitFiles(path.join(dir, "a"), "train")).toEqual(at("a/train-0.jsonl", "a/train-link.jsonl"));
    // matches but none of the split
    const none = await errorOf(resolveSplitFiles(path.join(dir, "a/b/**/*.parquet"), "test"));
    expect(none.message).toContain("none of split 'test'");
  });

  test("natural order", () => {
    expect(["t-10", "t-2", "t-1", "t-02", "s"].sort(naturalCompare)).toEqual(["s", "t-1", "t-2", "t-02", "t-10"]);
  });
});

// ---- streaming -------------------------------------------------------------------------------

describe("streaming", () => {
  const N = 20_000;
  let big: string;
  beforeAll(async () => {
    big = path.join(fresh("big"), "train.jsonl");
    // the last line is broken: a reader that parsed the whole file up front would fail on it
    await writeJsonl(big, many(N - 1));
    const handle = await open(big, "a");
    await handle.write('{"real": [\n');
    await handle.close();
  });

  test("a 20 000-row jsonl: limit returns the first rows without reaching the end", async () => {
    const t0 = performance.now();
    const first = await readSpinRows(big, "train", { limit: 5 });
    const ms = performance.now() - t0;
    expect(first).toEqual(many(5));
    expect(ms).toBeLessThan(1000);
    // the whole file: every row, then the broken last line
    let count = 0;
    const e = await errorOf(async () => {
      for await (const _ of streamSpinRows(big)) count++;
    });
    expect(count).toBe(N - 1);
    expect(e.message).toContain(`line ${N} is not valid JSON`);
  });

  test.skipIf(process.platform === "win32")(
    "rows are yielded before the file is complete (a FIFO fed by the test)",
    async () => {
      const fifo = path.join(fresh("fifo"), "train.jsonl");
      execFileSync("mkfifo", [fifo]);
      const it = streamSpinRows(fifo)[Symbol.asyncIterator]();
      const firstRow = it.next();
      // opening a FIFO for writing waits for its reader; a reader that failed would leave it waiting
      const failed = firstRow.then(() => new Promise<never>(() => {}));
      const writerOpen = open(fifo, "w");
      let writer: Awaited<ReturnType<typeof open>> | undefined;
      let closed = false;
      try {
        writer = await Promise.race([writerOpen, failed]);
        await writer.write(JSON.stringify(ROWS[0]) + "\n" + JSON.stringify(ROWS[1]) + "\n");
        // the writer is still open: the file is not complete, yet the rows come
        expect((await firstRow).value).toEqual(ROWS[0]);
        expect((await it.next()).value).toEqual(ROWS[1]);
        await writer.write(JSON.stringify(ROWS[2]) + "\n");
        await writer.close();
        closed = true;
        expect((await it.next()).value).toEqual(ROWS[2]);
        expect((await it.next()).done).toBe(true);
      } finally {
        if (writer !== undefined) {
          if (!closed) await writer.close();
        } else {
          // the reader failed: release the pending open for writing by opening the FIFO for reading
          const release = await open(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
          await writerOpen.then((w) => w.close(), () => undefined);
          await release.close();
          await it.return(undefined);
        }
      }
    },
    10_000,
  );

  test("parquet is read one row group at a time: a corrupt last row group is only reached at its rows", async () => {
    const file = path.join(fresh("bigpq"), "train.parquet");
    await writeParquet(file, many(N), { rowGroupSize: 2000 });
    const bytes = readFileSync(file);
    const metadata = parquetMetadata(new Uint8Array(bytes).buffer);
    expect(metadata.row_groups).toHaveLength(10);
    const last = metadata.row_groups[9]!.columns[0]!.meta_data!;
    bytes.fill(0, Number(last.data_page_offset), Number(last.data_page_offset) + 64);
    writeFileSync(file, bytes);
    expect(await readSpinRows(file, "train", { limit: 3 })).toEqual(many(3));
    let count = 0;
    const e = await errorOf(async () => {
      for await (const _ of streamSpinRows(file)) count++;
    });
    expect(count).toBe(18_000);
    expect(e.code).toBe("IO");
    expect(e.message).toContain("rows 18000..19999");
  });

  test("limit validation", async () => {
    expect(await readSpinRows(big, "train", { limit: 0 })).toEqual([]);
    expect((await errorOf(readSpinRows(big, "train", { limit: -1 }))).code).toBe("INVALID_ARGUMENT");
    expect((await errorOf(readSpinRows(big, "train", { limit: 1.5 }))).code).toBe("INVALID_ARGUMENT");
  });
});

// ---- the mixer -------------------------------------------------------------------------------

describe("mixer", () => {
  const a = Array.from({ length: 10 }, (_, i) => `a${i}`);
  const b = Array.from({ length: 7 }, (_, i) => `b${i}`);

  test("each source keeps its first ⌊frac·len⌋ rows; the concatenation is shuffled", () => {
    const mixed = mixDatasets([
      { rows: a, fraction: 0.5 },
      { rows: b, fraction: 0.3 },
    ]);
    // ⌊0.5·10⌋ = 5 and ⌊0.3·7⌋ = ⌊2.1⌋ = 2
    expect([...mixed].sort()).toEqual(["a0", "a1", "a2", "a3", "a4", "b0", "b1"]);
    expect(mixed).toEqual(seededShuffle(["a0", "a1", "a2", "a3", "a4", "b0", "b1"], 42));
    expect(mixed).not.toEqual(["a0", "a1", "a2", "a3", "a4", "b0", "b1"]);
    expect(mixDatasets([{ rows: a, fraction: 1 }, { rows: b, fraction: 1 }])).toHaveLength(17);
    expect(mixDatasets([{ rows: a, fraction: 0.05 }])).toEqual([]); // ⌊0.5⌋ = 0
  });

  test("⌊frac·len⌋ in floating point, as Python's int(frac * len)", () => {
    expect(fractionCount(0.29, 100)).toBe(28); // 0.29*100 = 28.999999999999996
    expect(fractionCount(0.7, 10)).toBe(7); // 7.000000000000001
    expect(fractionCount(1, 12345)).toBe(12345);
    expect(fractionCount(1 / 3, 3)).toBe(1);
  });

  test("order of sources and the seed decide the result; same seed, same result", () => {
    const rows = Array.from({ length: 50 }, (_, i) => i);
    const x = mixDatasets([{ rows, fraction: 1 }], 42);
    expect(mixDatasets([{ rows, fraction: 1 }], 42)).toEqual(x);
    expect(mixDatasets([{ rows, fraction: 1 }])).toEqual(x); // default seed 42
    expect(mixDatasets([{ rows, fraction: 1 }], 43)).not.toEqual(x);
    expect([...x].sort((p, q) => p - q)).toEqual(rows);
    // concatenation order matters for the shuffled positions
    const ab = mixDatasets([{ rows: a, fraction: 1 }, { rows: b, fraction: 1 }]);
    const ba = mixDatasets([{ rows: b, fraction: 1 }, { rows: a, fraction: 1 }]);
    expect(ab).toEqual(seededShuffle([...a, ...b], 42));
    expect(ba).toEqual(seededShuffle([...b, ...a], 42));
    expect(ab).not.toEqual(ba);
    expect(seededShuffle([], 42)).toEqual([]);
  });

  test("the shuffle is the generator's construction (mulberry32 + Fisher–Yates, shuffledOrder)", async () => {
    const { shuffledOrder } = await import("../lib/spin/generator.js");
    for (const [n, seed] of [[1, 42], [17, 42], [1000, 42], [100, 7]] as const) {
      expect(seededShuffle(Array.from({ length: n }, (_, i) => i), seed)).toEqual(shuffledOrder(n, seed));
    }
  });

  test("fractions outside (0, 1] are errors naming the source", async () => {
    for (const fraction of [0, -0.1, 1.5, Number.NaN]) {
      const e = await errorOf(() => mixDatasets([{ rows: a, fraction: 1 }, { rows: b, fraction, name: "iter1" }]));
      expect(e.code).toBe("INVALID_ARGUMENT");
      expect(e.message).toContain("iter1");
    }
    expect((await errorOf(() => mixDatasets([{ rows: a, fraction: 2 }]))).message).toContain("source 0");
    expect((await errorOf(() => mixDatasets([{ rows: a, fraction: 1 }], 1.5))).code).toBe("INVALID_ARGUMENT");
  });

  test("dataset_mixer form: paths → fractions, train subsampled, test kept whole", async () => {
    const iter0 = fresh("iter0");
    const iter1 = fresh("iter1");
    await writeJsonl(path.join(iter0, "train.jsonl"), many(10, "zero"));
    await writeJsonl(path.join(iter0, "test.jsonl"), many(4, "zerotest"));
    await writeParquet(path.join(iter1, "train_prefs-00000-of-00001.parquet"), many(6, "one"));
    await writeParquet(path.join(iter1, "test_prefs-00000-of-00001.parquet"), many(3, "onetest"));
    const train = await mixDatasetFiles({ [iter0]: 0.5, [iter1]: 0.5 });
    const expected = mixDatasets([
      { rows: many(10, "zero"), fraction: 0.5 },
      { rows: many(6, "one"), fraction: 0.5 },
    ]);
    expect(train).toEqual(expected);
    expect(train).toHaveLength(8);
    expect(await mixDatasetFiles([[iter0, 0.5], [iter1, 0.5]], { seed: 42 })).toEqual(expected);
    const test_ = await mixDatasetFiles({ [iter0]: 0.5, [iter1]: 0.5 }, { split: "test" });
    expect(test_).toEqual(seededShuffle([...many(4, "zerotest"), ...many(3, "onetest")], 42));
    const e = await errorOf(mixDatasetFiles({ [iter0]: 1, [iter1]: 0 }));
    expect(e.message).toContain(iter1);
    expect((await errorOf(mixDatasetFiles({}))).code).toBe("INVALID_ARGUMENT");
  });
});

test("SPIN_PARQUET_SCHEMA has the two list columns", () => {
  expect(SPIN_PARQUET_SCHEMA.map((e) => e.name)).toEqual(["schema", "real", "list", "element", "content", "role", "generated", "list", "element", "content", "role"]);
});

describe("identicalPairShare", () => {
  const pair = (prompt: string, real: string, generated: string): SpinRow => ({
    real: [{ role: "user", content: prompt }, { role: "assistant", content: real }],
    generated: [{ role: "user", content: prompt }, { role: "assistant", content: generated }],
  });

  test("counts pairs whose whole conversations are equal", () => {
    const rows = [pair("a", "x", "x"), pair("b", "y", "z"), pair("c", "w", "w "), pair("d", "v", "v")];
    expect(identicalPairShare(rows)).toBe(2 / 4);
    expect(identicalPairShare([])).toBe(0);
    // A multi-turn prompt: only equal when every turn is.
    const multi: SpinRow = {
      real: [{ role: "system", content: "s" }, { role: "user", content: "q" }, { role: "assistant", content: "r" }],
      generated: [{ role: "system", content: "s" }, { role: "user", content: "q" }, { role: "assistant", content: "r" }],
    };
    expect(identicalPairShare([multi, pair("e", "1", "2"), pair("f", "1", "2")])).toBeCloseTo(1 / 3, 15);
  });
});
