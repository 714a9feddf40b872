// A loaded model owns its weights: CausalLM.load reads the checkpoint into memory of the
// process, so rewriting or truncating the file afterwards changes nothing (with the weights
// memory-mapped, as before, a rewrite changed the live model and a truncation was a SIGBUS).
// `{ mmap: true }` still maps, with that hazard; a file that shrinks during the read is an IO
// error naming the file and the tensor.
import { closeSync, existsSync, openSync, statSync, truncateSync, writeSync } from "node:fs";
import path from "node:path";

import { afterAll, describe, expect, test } from "vitest";

import { CausalLM, SpinNativeError, ones, readSafetensorsHeader, tensor } from "../lib/index.js";
import { native } from "../lib/core/native.js";
import { removeRoot, tempRoot, writeFixture } from "./fixtures.js";
import { rejection } from "./helpers.js";

const root = tempRoot("owned-weights");
afterAll(() => removeRoot(root));

let next = 0;
async function checkpoint(): Promise<{ dir: string; file: string }> {
  const dir = path.join(root, `model-${next++}`);
  await writeFixture(dir, "llama");
  return { dir, file: path.join(dir, "model.safetensors") };
}

function logits(model: CausalLM): number[] {
  const ids = tensor([[1, 5, 9, 3, 7]], { dtype: "int64" });
  const mask = ones([1, 5], { dtype: "int64" });
  const out = model.forward(ids, mask);
  try {
    return Array.from(out.toTypedArray() as Float32Array);
  } finally {
    for (const t of [ids, mask, out]) t.dispose();
  }
}

/** Writes zeros over every tensor's bytes, in place: same file, same size. */
async function zeroData(file: string): Promise<void> {
  const { dataStart } = await readSafetensorsHeader(file);
  const bytes = statSync(file).size - dataStart;
  const fd = openSync(file, "r+");
  try {
    writeSync(fd, Buffer.alloc(bytes), 0, bytes, dataStart);
  } finally {
    closeSync(fd);
  }
}

describe("owned weights (the default)", () => {
  test("rewriting the file in place leaves the loaded model unchanged", async () => {
    const { dir, file } = await checkpoint();
    using model = await CausalLM.load(dir);
    const before = logits(model);
    await zeroData(file);
    expect(logits(model)).toEqual(before);
    // The rewrite took: the file now holds another model.
    using reloaded = await CausalLM.load(dir);
    expect(logits(reloaded)).not.toEqual(before);
  });

  test("truncating the file leaves the loaded model running", async () => {
    const { dir, file } = await checkpoint();
    using model = await CausalLM.load(dir);
    const before = logits(model);
    truncateSync(file, Math.floor(statSync(file).size / 2));
    expect(logits(model)).toEqual(before);
  });

  // A file whose size says more than a read returns: what a truncation between the size
  // check and the read looks like. sysfs files report 4096 bytes and hold a few.
  const shortFile = "/sys/devices/system/cpu/online";
  test.skipIf(!existsSync(shortFile))("a file that ends before its tensors are read is an IO error naming the file and tensor", async () => {
    const records = [{ name: "w", dtype: "U8", shape: [4000], begin: 0, end: 4000 }];
    const error = await rejection<SpinNativeError>(native.mapSafetensors(shortFile, 8, records, null, null, false));
    expect(error).toBeInstanceOf(SpinNativeError);
    expect(error.code).toBe("IO");
    expect(error.message).toMatch(/\/sys\/devices\/system\/cpu\/online: file changed or truncated while loading tensor 'w' \(the file ends \d+ bytes into its 4000\)/);
  });
});

describe("{ mmap: true }", () => {
  test("loads the same model, which reads the file itself (the documented hazard)", async () => {
    const { dir, file } = await checkpoint();
    using owned = await CausalLM.load(dir);
    using mapped = await CausalLM.load(dir, { mmap: true });
    const before = logits(owned);
    expect(logits(mapped)).toEqual(before);
    // Safe to show with a same-size rewrite; a truncation would kill this process.
    await zeroData(file);
    expect(logits(mapped)).not.toEqual(before);
    expect(logits(owned)).toEqual(before);
  });
});
