// Data and output folders: bytes that are not valid UTF-8 are an error naming the file and line
// (jsonl, json) or rows (parquet) instead of U+FFFD trained on; a bad row of `spin-native
// generate`'s input names its file and line, not only a row number; an output folder that
// cannot be created fails at once, before any work, with the OS's reason.
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";

import { parquetWriteBuffer } from "hyparquet-writer";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { readRows, readSpinRows } from "../lib/data/dataset-read.js";
import { SpinNativeError } from "../lib/core/errors.js";
import { type Exit, ensureDist, runCli, writeTinyCheckpoint } from "./cli-helpers.js";
import { removeRoot, tempRoot } from "./fixtures.js";
import { rejection } from "./helpers.js";

const root = tempRoot("validation-data");
const model = path.join(root, "model");

beforeAll(async () => {
  ensureDist();
  await writeTinyCheckpoint(model);
}, 120_000);
afterAll(() => removeRoot(root));

const show = (exit: Exit) => `exit ${exit.code} (${exit.signal})\nstdout:\n${exit.stdout}\nstderr:\n${exit.stderr}`;
const line = (row: unknown) => Buffer.from(JSON.stringify(row) + "\n");
/** A JSON line whose prompt holds bytes that are not UTF-8 (0xff never is). */
const badLine = Buffer.concat([Buffer.from('{"prompt": "caf'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('", "response": "x"}\n')]);

async function invalid(promise: Promise<unknown>, message: string): Promise<void> {
  const error = await rejection<SpinNativeError>(promise);
  expect(error, message).toBeInstanceOf(SpinNativeError);
  expect(error.code).toBe("INVALID_ARGUMENT");
  expect(error.message).toBe(message);
}

async function collect(file: string): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const row of readRows(file)) out.push(row.raw);
  return out;
}

describe("invalid UTF-8", () => {
  test("jsonl: an error naming the file and the line, the lines before it read; valid text split across read chunks is intact", async () => {
    const file = path.join(root, "bad-utf8.jsonl");
    writeFileSync(file, Buffer.concat([line({ prompt: "a", response: "b" }), Buffer.from("\n"), badLine, line({ prompt: "c", response: "d" })]));
    await invalid(readSpinRows(file), `${file}: line 3 is not valid UTF-8`);
    await invalid(collect(file), `${file}: line 3 is not valid UTF-8`);
    // A sequence cut short by the line's end is not UTF-8 either.
    const cut = path.join(root, "cut-utf8.jsonl");
    writeFileSync(cut, Buffer.concat([Buffer.from('{"prompt": "caf'), Buffer.from([0xc3]), Buffer.from('\n"}\n')]));
    await invalid(collect(cut), `${cut}: line 1 is not valid UTF-8`);

    // "é" (2 bytes) across the 64 KiB boundary of the file stream's chunks.
    const long = path.join(root, "long.jsonl");
    const prompt = "a".repeat(65536 - '{"prompt":"'.length - 1) + "é ok";
    writeFileSync(long, JSON.stringify({ prompt, response: "r" }) + "\r\n");
    expect(await collect(long)).toEqual([{ prompt, response: "r" }]);
  });

  test("json: an error naming the file and the line", async () => {
    const file = path.join(root, "bad-utf8.json");
    writeFileSync(file, Buffer.concat([Buffer.from('[\n{"prompt": "a", "response": "b"},\n'), badLine.subarray(0, -1), Buffer.from("\n]\n")]));
    await invalid(readSpinRows(file), `${file}: line 3 is not valid UTF-8`);
  });

  test("parquet: a string that is not UTF-8 is an error naming the file and the rows", async () => {
    const file = path.join(root, "bad-utf8.parquet");
    const bytes = (text: string) => new TextEncoder().encode(text);
    const buffer = parquetWriteBuffer({
      columnData: [
        { name: "prompt", data: [bytes("ok"), new Uint8Array([0x68, 0x69, 0xff])], type: "BYTE_ARRAY" },
        { name: "response", data: ["a", "b"], type: "STRING" },
      ],
    });
    writeFileSync(file, new Uint8Array(buffer));
    await invalid(readSpinRows(file), `${file}: rows 0..1 hold a string that is not valid UTF-8`);
  });
});

test("`spin-native generate`: a bad input row is named by its file and line (exit 1)", async () => {
  const data = path.join(root, "sft");
  mkdirSync(data);
  const good = { prompt: "say cat", response: "tac" };
  writeFileSync(path.join(data, "train-0.jsonl"), Buffer.concat([line(good), line(good)]));
  // Row 1 of the second file, on its line 3: a prompt without a user turn.
  const second = path.join(data, "train-1.jsonl");
  writeFileSync(second, Buffer.concat([line(good), Buffer.from("\n"), line({ messages: [{ role: "system", content: "s" }, { role: "assistant", content: "a" }] })]));
  // A row of no known shape, on line 2.
  const shapeless = path.join(root, "shapeless.jsonl");
  writeFileSync(shapeless, Buffer.concat([line(good), line({ question: "?" })]));

  const args = (input: string, out: string) => ["generate", `--model_name_or_path=${model}`, `--input=${input}`, `--output_dir=${path.join(root, out)}`, "--max_new_tokens=2"];
  const [noUser, noShape] = await Promise.all([runCli(args(data, "gen-a")), runCli(args(shapeless, "gen-b"))]);
  expect(noUser.code, show(noUser)).toBe(1);
  expect(noUser.stderr).toBe(`spin-native: ${second} (line 3): row 1: the prompt has no user turn\n`);
  expect(noShape.code, show(noShape)).toBe(1);
  expect(noShape.stderr).toContain(`spin-native: ${shapeless} (line 2): row 1: the row fits none of`);
});

test("an output folder that cannot be created: one error with the OS's reason, before the model or data are read", async () => {
  const file = path.join(root, "a-file");
  writeFileSync(file, "not a folder");
  const out = path.join(file, "run");
  const missing = (name: string) => path.join(root, `missing-${name}`);
  const runs = await Promise.all([
    runCli(["train", `--model_name_or_path=${missing("model")}`, `--input=${missing("data.jsonl")}`, `--output_dir=${out}`]),
    runCli(["sft", `--model_name_or_path=${missing("model")}`, `--input=${missing("data.jsonl")}`, `--output_dir=${out}`]),
    runCli(["generate", `--model_name_or_path=${missing("model")}`, `--input=${missing("data.jsonl")}`, `--output_dir=${out}`]),
    runCli(["iterate", `--model_name_or_path=${missing("model")}`, `--input=${missing("data.jsonl")}`, `--output_dir=${out}`]),
  ]);
  for (const exit of runs) {
    expect(exit.code, show(exit)).toBe(1);
    expect(exit.stderr).toBe(`spin-native: cannot create output folder ${out}: ENOTDIR: not a directory, mkdir '${out}'\n`);
  }
});
