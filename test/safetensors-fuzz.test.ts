// loadSafetensors on hostile input: thousands of mutated and truncated files derived from one
// valid file (seeded, reproducible). Each must either load — and then every tensor's bytes are
// its shape × item size, its data readable, its name and shape those of the header — or reject
// with a SpinNativeError of code IO whose message names the file. Never a crash, a hang, or
// another error type. Then targeted cases with their exact messages.
import { existsSync, unlinkSync, writeFileSync } from "node:fs";
import path from "node:path";

import { afterAll, describe, expect, test } from "vitest";

import { SpinNativeError, type Tensor, loadSafetensors } from "../lib/index.js";
import { removeRoot, tempRoot } from "./fixtures.js";

const root = tempRoot("safetensors-fuzz");
afterAll(() => removeRoot(root));

// ---- a seeded PRNG (mulberry32) ------------------------------------------------------------

function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!,
  };
}
type Rng = ReturnType<typeof prng>;

// ---- the valid file ------------------------------------------------------------------------

const ITEM: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, U8: 1, BOOL: 1 };
const DTYPE_ITEM: Record<string, number> = { float64: 8, float32: 4, float16: 2, bfloat16: 2, int64: 8, int32: 4, uint8: 1, bool: 1 };

type Entry = { dtype: unknown; shape: unknown; data_offsets: unknown; [k: string]: unknown };
type Header = Record<string, unknown>;

const BASE_TENSORS: [string, string, number[]][] = [
  ["a", "F32", [2, 3]],
  ["b", "F64", [4]],
  ["c", "F16", [3, 1]],
  ["d", "BF16", [2]],
  ["e", "I64", [2]],
  ["f", "I32", [1]],
  ["g", "U8", [5]],
  ["h", "BOOL", [3]],
  ["s", "F32", []],
  ["z", "F32", [0, 3]],
];

function baseHeader(): { header: Header; dataLength: number } {
  const header: Header = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const [name, dtype, shape] of BASE_TENSORS) {
    const bytes = ITEM[dtype]! * shape.reduce((x, y) => x * y, 1);
    header[name] = { dtype, shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  return { header, dataLength: offset };
}

function baseData(rng: Rng, length: number): Buffer {
  const data = Buffer.alloc(length);
  for (let i = 0; i < length; i++) data[i] = rng.int(256);
  // BOOL bytes 0/1 as a writer would store them
  const { header } = baseHeader();
  const [hb, he] = (header.h as Entry).data_offsets as [number, number];
  for (let i = hb; i < he; i++) data[i] = rng.int(2);
  return data;
}

/** prefix (u64 LE length) + header bytes (padded with spaces to 8 when `pad`) + data. */
function assemble(headerBytes: Buffer, data: Buffer, pad = true): Buffer {
  let body = headerBytes;
  if (pad) body = Buffer.concat([body, Buffer.alloc((8 - ((body.length + 8) % 8)) % 8, 0x20)]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(body.length));
  return Buffer.concat([prefix, body, data]);
}

const fileOf = (header: Header, data: Buffer, pad = true) => assemble(Buffer.from(JSON.stringify(header), "utf8"), data, pad);

// ---- running one case -----------------------------------------------------------------------

let counter = 0;
const outcomes = { loaded: 0, rejected: 0 };

function tensorBytesOk(name: string, t: Tensor): void {
  const item = DTYPE_ITEM[t.dtype];
  expect(item, `${name}: dtype ${t.dtype}`).toBeDefined();
  const numel = t.shape.reduce((x, y) => x * y, 1);
  expect(t.nbytes, `${name}: nbytes vs shape ${JSON.stringify(t.shape)} × ${item}`).toBe(numel * item!);
  const data = t.toTypedArray(); // touches the mapped memory
  expect(data.byteLength, name).toBe(numel * item!);
}

/** The header as an independent JSON.parse reads it, when the file is well formed enough. */
function independentHeader(bytes: Buffer): Header | null {
  try {
    if (bytes.length < 8) return null;
    const n = bytes.readBigUInt64LE(0);
    if (n > BigInt(bytes.length - 8)) return null;
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + Number(n)));
    const parsed = JSON.parse(text) as unknown;
    return parsed !== null && typeof parsed === "object" && !Array.isArray(parsed) ? (parsed as Header) : null;
  } catch {
    return null;
  }
}

async function check(bytes: Buffer, label: string): Promise<"loaded" | "rejected"> {
  const file = path.join(root, `case-${counter++}.safetensors`);
  writeFileSync(file, bytes);
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${label}: loadSafetensors did not settle within 5 s`)), 5000);
  });
  try {
    let tensors: Record<string, Tensor>;
    try {
      tensors = await Promise.race([loadSafetensors(file), hang]);
    } catch (error) {
      if (!(error instanceof SpinNativeError)) {
        throw new Error(`${label}: rejected with a non-SpinNativeError: ${String(error)}`);
      }
      if (error.code !== "IO" || !error.message.includes(file)) {
        throw new Error(`${label}: rejected with code ${error.code}, message ${JSON.stringify(error.message)} (want IO naming ${file})`);
      }
      // A per-tensor problem names the tensor, and that name is one of the header's.
      if (/\btensors? '/.test(error.message)) {
        const header = independentHeader(bytes);
        const quoted = [...error.message.matchAll(/'((?:[^'\\]|\\.)*)'/g)].map((m) => m[1]!);
        if (header && quoted.length > 0 && !quoted.some((q) => q in header)) {
          throw new Error(`${label}: message names tensor(s) ${JSON.stringify(quoted)} not in the header: ${JSON.stringify(error.message)}`);
        }
      }
      outcomes.rejected++;
      return "rejected";
    }
    try {
      const header = independentHeader(bytes);
      if (header) {
        const names = Object.keys(header).filter((k) => k !== "__metadata__").sort();
        const loaded = Object.keys(tensors);
        const missing = names.filter((n) => !loaded.includes(n));
        const extra = loaded.filter((n) => !names.includes(n));
        if (missing.length + extra.length > 0) {
          throw new Error(`${label}: loaded names differ from the header's: missing ${JSON.stringify(missing)}, extra ${JSON.stringify(extra)}`);
        }
        for (const name of names) expect(tensors[name]!.shape, `${label}: ${name} shape`).toEqual((header[name] as Entry).shape);
      }
      for (const [name, t] of Object.entries(tensors)) tensorBytesOk(`${label}: ${name}`, t);
    } finally {
      for (const t of Object.values(tensors)) t.dispose();
    }
    outcomes.loaded++;
    return "loaded";
  } finally {
    clearTimeout(timer);
    unlinkSync(file);
  }
}

// ---- mutations --------------------------------------------------------------------------------

const DTYPES: unknown[] = ["F8", "f32", "", "F32 ", "F128", "I8", "U16", "F8_E4M3", "BF16", "F64", "BOOL", "U8", "F16", "I64", 5, null, [], {}, true];
const bad = (data: Buffer): unknown[][] => [
  [-1],
  [1.5],
  ["2"],
  [2 ** 53],
  [1e20],
  [],
  [0],
  [2, 2, 2, 2],
  [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
  [Number.MAX_SAFE_INTEGER, 0],
  [2 ** 40, 2 ** 40, 0],
  [0, 2 ** 62],
  [data.length],
  [null],
  [[2]],
];

function offsetsChoices(rng: Rng, dataLength: number, header: Header): unknown[] {
  const names = Object.keys(header).filter((k) => k !== "__metadata__");
  const other = header[rng.pick(names)] as Entry | undefined;
  const r = () => rng.int(dataLength + 2);
  return [
    [-1, 4],
    [0.5, 4],
    [0, 1e30],
    [8, 0],
    [0],
    [0, 4, 8],
    ["0", "4"],
    null,
    "0,4",
    [0, dataLength + 1],
    [dataLength, dataLength],
    [dataLength + 8, dataLength + 8],
    [0, 2 ** 53],
    [2 ** 53 - 1, 2 ** 53 - 1],
    other?.data_offsets ?? [0, 0],
    [r(), r()],
    [r(), r()],
    [-0, 0],
    [1e3, 1e3 + 24],
  ];
}

const NAMES = ["", "__proto__", "a\u0000", "b\u0000x", "constructor", "toString", "hasOwnProperty", "é", "\u0000", "a".repeat(300), "model.layers.0.weight", "__metadata__x"];

function mutateJson(rng: Rng, header: Header, data: Buffer): Header | unknown {
  const names = () => Object.keys(header).filter((k) => k !== "__metadata__");
  const steps = 1 + rng.int(3);
  for (let s = 0; s < steps; s++) {
    const list = names();
    const name = list.length > 0 ? rng.pick(list) : "a";
    const entry = { ...((header[name] as Entry | undefined) ?? { dtype: "F32", shape: [1], data_offsets: [0, 4] }) };
    switch (rng.int(14)) {
      case 0:
        entry.dtype = rng.pick(DTYPES);
        header[name] = entry;
        break;
      case 1:
        entry.shape = rng.pick(bad(data));
        header[name] = entry;
        break;
      case 2:
        entry.data_offsets = rng.pick(offsetsChoices(rng, data.length, header));
        header[name] = entry;
        break;
      case 3:
        header[name] = rng.pick([1, "x", [], null, true, {}, [entry]]);
        break;
      case 4:
        delete entry[rng.pick(["dtype", "shape", "data_offsets"])];
        header[name] = entry;
        break;
      case 5:
        entry.extra = rng.pick([1, "x", null, { a: 1 }]);
        header[name] = entry;
        break;
      case 6: {
        const value = header[name];
        delete header[name];
        // defineProperty: a plain assignment of "__proto__" would set the prototype instead.
        Object.defineProperty(header, rng.pick(NAMES), { value, enumerable: true, configurable: true, writable: true });
        break;
      }
      case 7:
        delete header[name];
        break;
      case 8:
        header[`${name}_copy`] = { ...entry };
        break;
      case 9:
        header.__metadata__ = rng.pick([[], null, 1, { a: 1 }, { format: "pt", x: null }, "str", {}, { format: "np" }]);
        break;
      case 10: {
        // swap two tensors' offsets
        const other = rng.pick(list);
        const a = header[name] as Entry;
        const b = header[other] as Entry;
        if (a && b && typeof a === "object" && typeof b === "object") {
          header[name] = { ...a, data_offsets: b.data_offsets };
          header[other] = { ...b, data_offsets: a.data_offsets };
        }
        break;
      }
      case 11: {
        // a shape consistent with its byte range but a different layout, or dims scaled
        const dims = Array.isArray(entry.shape) ? (entry.shape as number[]) : [1];
        entry.shape = dims.map((d) => (typeof d === "number" ? d * rng.pick([0, 1, 2, 1000, 2 ** 31]) : d));
        header[name] = entry;
        break;
      }
      case 13:
        // zero-element tensors with extreme dims: 0 bytes, any offset inside the data
        entry.shape = rng.pick([[Number.MAX_SAFE_INTEGER, 0], [9e15, 0], [9e15 + 2, 0], [2 ** 40, 2 ** 40, 0], [0, 2 ** 40, 2 ** 40], [0]]);
        entry.data_offsets = rng.pick([[0, 0], [data.length, data.length], [7, 7]]);
        header[name] = entry;
        break;
      case 12:
        if (rng.int(10) === 0) return rng.pick([[], "x", 1, null, true, [header]]);
        entry.dtype = rng.pick(["F32", "F64", "F16", "BF16", "I64", "I32", "U8", "BOOL"]);
        header[name] = entry;
        break;
    }
  }
  return header;
}

const BAD_UTF8 = [[0xff], [0xc3], [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xe2, 0x82], [0xef, 0xbb, 0xbf]];

function mutateText(rng: Rng, text: Buffer): Buffer {
  const bytes = [...text];
  const steps = 1 + rng.int(3);
  for (let s = 0; s < steps; s++) {
    const at = rng.int(bytes.length + 1);
    switch (rng.int(5)) {
      case 0:
        bytes.splice(at, 1 + rng.int(4));
        break;
      case 1:
        bytes.splice(at, 0, ...rng.pick(BAD_UTF8));
        break;
      case 2:
        bytes.splice(at, 0, ...Buffer.from(rng.pick(["{", "}", "[", "]", ",", ":", '"', "\\", "-", "1e999", "null", "0", "9".repeat(30)])));
        break;
      case 3:
        bytes[Math.min(at, bytes.length - 1)] = rng.int(256);
        break;
      case 4:
        bytes.splice(at, 0, ...Buffer.from(`"k${rng.int(100)}":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},`));
        break;
    }
  }
  return Buffer.from(bytes);
}

// ---- the fuzz run ---------------------------------------------------------------------------------

describe("fuzz: mutated and truncated files", () => {
  const rng = prng(20240607);
  const { header: validHeader, dataLength } = baseHeader();
  const data = baseData(rng, dataLength);
  const valid = fileOf(validHeader, data);
  const validDataStart = 8 + Number(valid.readBigUInt64LE(0));
  const clone = (): Header => JSON.parse(JSON.stringify(validHeader)) as Header;

  test("the base file loads with the written values", async () => {
    const file = path.join(root, "valid.safetensors");
    writeFileSync(file, valid);
    const tensors = await loadSafetensors(file);
    expect(Object.keys(tensors).sort()).toEqual(BASE_TENSORS.map(([n]) => n).sort());
    for (const [name, dtype, shape] of BASE_TENSORS) {
      const t = tensors[name]!;
      expect(t.shape).toEqual(shape);
      const [b, e] = (validHeader[name] as Entry).data_offsets as [number, number];
      const raw = t.toTypedArray();
      expect(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).equals(data.subarray(b, e)), `${name} ${dtype}`).toBe(true);
      t.dispose();
    }
  });

  const cases: [string, number, (i: number) => Buffer][] = [
    [
      "header byte flips",
      450,
      () => {
        const b = Buffer.from(valid);
        for (let k = 1 + rng.int(4); k > 0; k--) b[8 + rng.int(validDataStart - 8)] = rng.int(256);
        return b;
      },
    ],
    [
      "data byte flips",
      200,
      () => {
        const b = Buffer.from(valid);
        for (let k = 1 + rng.int(8); k > 0; k--) b[validDataStart + rng.int(dataLength)] = rng.int(256);
        return b;
      },
    ],
    ["truncations", 400, () => valid.subarray(0, rng.int(valid.length))],
    [
      "header-length field",
      300,
      () => {
        const b = Buffer.from(valid);
        const real = validDataStart - 8;
        const choices = [0n, 1n, 2n, 7n, BigInt(rng.int(real)), BigInt(real - 1), BigInt(real + 1), BigInt(b.length - 8), BigInt(b.length - 7),
          2n ** 32n, 2n ** 63n, 2n ** 64n - 1n, 100_000_000n, 100_000_001n, BigInt(Math.floor(rng.next() * 2 ** 52)) * 4096n];
        b.writeBigUInt64LE(rng.pick(choices), 0);
        return b;
      },
    ],
    [
      "JSON mutations",
      1200,
      () => {
        const mutated = mutateJson(rng, clone(), data);
        return assemble(Buffer.from(JSON.stringify(mutated) ?? "", "utf8"), data, rng.int(4) !== 0);
      },
    ],
    [
      "raw header text mutations (invalid UTF-8, broken JSON)",
      400,
      () => assemble(mutateText(rng, Buffer.from(JSON.stringify(validHeader), "utf8")), data, rng.int(2) === 0),
    ],
    [
      "JSON mutations + truncation",
      200,
      () => {
        const b = fileOf(mutateJson(rng, clone(), data) as Header, data);
        return b.subarray(0, b.length - 1 - rng.int(Math.min(b.length - 1, 64)));
      },
    ],
  ];

  const total = cases.reduce((a, [, n]) => a + n, 0);
  test(`${total} cases: load with consistent sizes or reject with IO naming the file`, async () => {
    expect(total).toBeGreaterThanOrEqual(3000);
    const perKind: Record<string, { loaded: number; rejected: number }> = {};
    const failures: string[] = [];
    for (const [kind, count, make] of cases) {
      const tally = (perKind[kind] = { loaded: 0, rejected: 0 });
      for (let i = 0; i < count; i++) {
        const bytes = make(i);
        try {
          tally[await check(bytes, `${kind} #${i}`)]++;
        } catch (error) {
          failures.push(`${(error as Error).message.split("\n")[0]} [header ${JSON.stringify(bytes.subarray(8, 8 + 160).toString("latin1"))}]`);
        }
      }
    }
    // All failures at once (the first few of each message shape), so one run shows every defect.
    const byShape = new Map<string, string[]>();
    for (const f of failures) {
      const shape = f.replace(/^.*?#\d+: /, "").replace(/case-\d+/g, "case-N").replace(/\[header .*$/, "").replace(/'[^']*'/g, "'T'").slice(0, 100);
      byShape.set(shape, [...(byShape.get(shape) ?? []), f]);
    }
    // Every kind must exercise both outcomes except those that cannot (data flips always load).
    expect(perKind["data byte flips"]!.rejected).toBe(0);
    expect(perKind["truncations"]!.rejected).toBeGreaterThan(350);
    for (const kind of ["header byte flips", "header-length field", "JSON mutations", "raw header text mutations (invalid UTF-8, broken JSON)"]) {
      expect(perKind[kind]!.rejected, kind).toBeGreaterThan(0);
      expect(perKind[kind]!.loaded, kind).toBeGreaterThan(0);
    }
    expect(outcomes.loaded + outcomes.rejected + failures.length).toBe(total);
    expect([...byShape.values()].map((list) => `${list.length}× ${list[0]}`)).toEqual([]);
  }, 60_000);
});

// ---- targeted cases with their exact messages --------------------------------------------------------

describe("targeted malformed files", () => {
  const write = (name: string, bytes: Buffer) => {
    const file = path.join(root, name);
    writeFileSync(file, bytes);
    return file;
  };
  const f32 = (n: number) => Buffer.alloc(4 * n, 0x3f);
  async function rejection(file: string): Promise<SpinNativeError> {
    try {
      const tensors = await loadSafetensors(file);
      for (const t of Object.values(tensors)) t.dispose();
    } catch (error) {
      expect(error).toBeInstanceOf(SpinNativeError);
      return error as SpinNativeError;
    }
    return expect.fail(`${file} loaded`);
  }
  async function expectMessage(file: string, message: string): Promise<void> {
    const error = await rejection(file);
    expect(error.code).toBe("IO");
    expect(error.message).toBe(message);
  }

  test("header length beyond the file", async () => {
    const b = fileOf({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] } }, f32(2));
    b.writeBigUInt64LE(BigInt(b.length), 0);
    const file = write("long-header.safetensors", b);
    await expectMessage(file, `safetensors: ${file}: header length ${b.length} exceeds the file (${b.length} bytes) or the 100000000-byte limit`);
  });

  test("file shorter than the length prefix", async () => {
    const file = write("tiny.safetensors", Buffer.from([1, 2, 3]));
    await expectMessage(file, `safetensors: ${file}: file is 3 bytes, shorter than the 8-byte header length`);
  });

  test("reversed offsets", async () => {
    const file = write("reversed.safetensors", fileOf({ a: { dtype: "F32", shape: [2], data_offsets: [8, 0] } }, f32(2)));
    await expectMessage(file, `safetensors: ${file}: tensor 'a': data_offsets [8, 0] are reversed`);
  });

  test("shape × itemsize differs from the byte range", async () => {
    const file = write("mismatch.safetensors", fileOf({ a: { dtype: "F32", shape: [2, 3], data_offsets: [0, 20] } }, f32(6)));
    await expectMessage(file, `safetensors: ${file}: tensor 'a': shape [2, 3] of F32 needs 24 bytes, data_offsets give 20`);
  });

  test("overlapping tensors", async () => {
    const header = { a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "F32", shape: [2], data_offsets: [4, 12] } };
    const file = write("overlap.safetensors", fileOf(header, f32(3)));
    await expectMessage(file, `safetensors: ${file}: tensors 'a' and 'b' overlap`);
  });

  test("truncated data", async () => {
    const header = { a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "F32", shape: [4], data_offsets: [8, 24] } };
    const full = fileOf(header, f32(6));
    const file = write("truncated.safetensors", full.subarray(0, full.length - 5));
    await expectMessage(file, `safetensors: ${file}: tensor 'b': data ends at 24, beyond the 19 data bytes (truncated?)`);
  });

  test("unknown dtype F8", async () => {
    const file = write("f8.safetensors", fileOf({ a: { dtype: "F8", shape: [2], data_offsets: [0, 2] } }, Buffer.alloc(2)));
    await expectMessage(file, `safetensors: ${file}: tensor 'a': unsupported dtype "F8"`);
  });

  test("invalid UTF-8 and non-object headers", async () => {
    const utf = write("utf8.safetensors", assemble(Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]), Buffer.alloc(0)));
    await expectMessage(utf, `safetensors: ${utf}: header is not valid UTF-8`);
    const arr = write("array.safetensors", assemble(Buffer.from("[]"), Buffer.alloc(0)));
    await expectMessage(arr, `safetensors: ${arr}: header is not a JSON object`);
    const entry = write("entry.safetensors", fileOf({ a: [1] }, Buffer.alloc(0)));
    await expectMessage(entry, `safetensors: ${entry}: tensor 'a': entry is not an object`);
  });

  test("missing file → IO naming it", async () => {
    const file = path.join(root, "does-not-exist.safetensors");
    expect(existsSync(file)).toBe(false);
    const error = await rejection(file);
    expect(error.code).toBe("IO");
    expect(error.message).toContain(file);
    expect(error.message).toMatch(/^safetensors: cannot open .*ENOENT/);
  });

  test("a zero-element tensor with a dimension above 9e15 is rejected naming the file and the tensor", async () => {
    // JS accepts the shape (safe integers, 0 bytes); the native reader refuses dims above 9e15.
    const file = write("huge-dim.safetensors", fileOf({ a: { dtype: "F32", shape: [Number.MAX_SAFE_INTEGER, 0], data_offsets: [0, 0] } }, Buffer.alloc(0)));
    try {
      const tensors = await loadSafetensors(file);
      expect(tensors.a!.shape).toEqual([Number.MAX_SAFE_INTEGER, 0]);
      for (const t of Object.values(tensors)) t.dispose();
    } catch (error) {
      expect(error).toBeInstanceOf(SpinNativeError);
      expect((error as SpinNativeError).code).toBe("IO");
      expect((error as SpinNativeError).message).toContain(file);
      expect((error as SpinNativeError).message).toContain("'a'");
    }
  });

  test("a tensor named __proto__ is loaded under its name", async () => {
    const header = JSON.parse('{"__proto__": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}') as Header;
    const file = write("proto.safetensors", fileOf(header, f32(2)));
    const tensors = await loadSafetensors(file);
    try {
      expect(Object.keys(tensors).sort()).toEqual(["__proto__", "b"]);
      expect(Object.getPrototypeOf(tensors)).toBe(Object.prototype);
    } finally {
      for (const t of Object.values(tensors)) t.dispose();
    }
  });
});
