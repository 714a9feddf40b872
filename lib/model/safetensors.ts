// safetensors files: the header is parsed and validated here (hostile input: every length,
// dtype, shape and range is checked before use), the tensor bytes are read (or mapped) and
// written by native/safetensors.cc, which checks every range against the file again.
import { open, readFile, stat } from "node:fs/promises";
import path from "node:path";

import type { DType } from "../core/dtype.js";
import { SpinNativeError } from "../core/errors.js";
import { writeFileAtomic } from "../core/atomic.js";
import { native } from "../core/native.js";
import { Tensor } from "../core/tensor.js";

/** Largest header accepted (the reference implementation's limit). */
const MAX_HEADER_BYTES = 100_000_000;

const ITEM_SIZE: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, U8: 1, BOOL: 1 };
const FILE_DTYPE: Partial<Record<DType, string>> = {
  float32: "F32",
  float64: "F64",
  float16: "F16",
  bfloat16: "BF16",
  int64: "I64",
  int32: "I32",
  uint8: "U8",
  bool: "BOOL",
};

/** One tensor's entry in a safetensors header. */
export interface SafetensorsRecord {
  name: string;
  dtype: string;
  shape: number[];
  /** Byte range relative to the start of the data section. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** Absolute offset of the data section (8 + header length). */
  dataStart: number;
  records: SafetensorsRecord[];
  metadata: Record<string, string>;
}

function corrupt(file: string, message: string): never {
  throw new SpinNativeError(`safetensors: ${file}: ${message}`, "IO", "safetensors");
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/** Reads and validates the header of a safetensors file. */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  let handle;
  try {
    handle = await open(file, "r");
  } catch (error) {
    throw new SpinNativeError(`safetensors: cannot open ${file}: ${(error as Error).message}`, "IO", "safetensors");
  }
  try {
    const { size } = await handle.stat();
    if (size < 8) corrupt(file, `file is ${size} bytes, shorter than the 8-byte header length`);
    const prefix = Buffer.alloc(8);
    await handle.read(prefix, 0, 8, 0);
    const headerBytes = prefix.readBigUInt64LE(0);
    if (headerBytes > BigInt(Math.min(MAX_HEADER_BYTES, size - 8))) {
      corrupt(file, `header length ${headerBytes} exceeds the file (${size} bytes) or the ${MAX_HEADER_BYTES}-byte limit`);
    }
    const length = Number(headerBytes);
    const raw = Buffer.alloc(length);
    await handle.read(raw, 0, length, 8);
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(raw);
    } catch {
      corrupt(file, "header is not valid UTF-8");
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      corrupt(file, `header is not valid JSON (${(error as Error).message})`);
    }
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) corrupt(file, "header is not a JSON object");
    const dataStart = 8 + length;
    const dataBytes = size - dataStart;
    const metadata: Record<string, string> = {};
    const records: SafetensorsRecord[] = [];
    for (const [name, entry] of Object.entries(parsed as Record<string, unknown>)) {
      if (name === "__metadata__") {
        if (entry === null || typeof entry !== "object" || Array.isArray(entry)) corrupt(file, "__metadata__ is not an object");
        for (const [key, value] of Object.entries(entry as Record<string, unknown>)) {
          if (typeof value !== "string") corrupt(file, `__metadata__.${key} is not a string`);
          metadata[key] = value;
        }
        continue;
      }
      if (entry === null || typeof entry !== "object" || Array.isArray(entry)) corrupt(file, `tensor '${name}': entry is not an object`);
      const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
      if (typeof dtype !== "string" || !(dtype in ITEM_SIZE)) corrupt(file, `tensor '${name}': unsupported dtype ${JSON.stringify(dtype)}`);
      if (!Array.isArray(shape) || !shape.every(isCount)) corrupt(file, `tensor '${name}': shape must be non-negative integers`);
      if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
        corrupt(file, `tensor '${name}': data_offsets must be two non-negative integers`);
      }
      const [begin, end] = offsets as [number, number];
      if (begin > end) corrupt(file, `tensor '${name}': data_offsets [${begin}, ${end}] are reversed`);
      if (end > dataBytes) corrupt(file, `tensor '${name}': data ends at ${end}, beyond the ${dataBytes} data bytes (truncated?)`);
      let bytes = BigInt(ITEM_SIZE[dtype]!);
      for (const d of shape as number[]) bytes *= BigInt(d);
      if (bytes !== BigInt(end - begin)) {
        corrupt(file, `tensor '${name}': shape [${(shape as number[]).join(", ")}] of ${dtype} needs ${bytes} bytes, data_offsets give ${end - begin}`);
      }
      records.push({ name, dtype, shape: shape as number[], begin, end });
    }
    const sorted = [...records].sort((a, b) => a.begin - b.begin || a.end - b.end);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i]!.begin < sorted[i - 1]!.end) {
        corrupt(file, `tensors '${sorted[i - 1]!.name}' and '${sorted[i]!.name}' overlap`);
      }
    }
    return { dataStart, records, metadata };
  } finally {
    await handle.close();
  }
}

export interface LoadOptions {
  /** Convert floating-point tensors to this dtype (integer tensors keep theirs). */
  dtype?: DType;
  device?: string;
  /**
   * Memory-map the file instead of reading it (default false): loading is nearly free, but
   * CPU tensors kept in the file's dtype stay views of the file. Only for files nothing
   * writes while they are in use: rewriting the file in place changes the loaded tensors, and
   * truncating it kills the process (SIGBUS) when they are next read. (Replacing the file by a
   * rename, as every save here does, is safe.) Without it the bytes are copied into memory the
   * process owns, and a file that changes during the load is an IO error.
   */
  mmap?: boolean;
}

/** Loads every tensor of one safetensors file, into memory the process owns unless `mmap` is set. */
export async function loadSafetensors(file: string, options: LoadOptions = {}): Promise<Record<string, Tensor>> {
  const header = await readSafetensorsHeader(file);
  const pairs = await native.mapSafetensors(file, header.dataStart, header.records, options.dtype ?? null, options.device ?? null, options.mmap ?? false);
  return Object.fromEntries(pairs.map(([name, handle]) => [name, new Tensor(handle)]));
}

/** The header bytes of a file holding `tensors` in this order: length prefix + JSON padded to 8. */
function encodeHeader(tensors: [string, Tensor][], metadata: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const [name, tensor] of tensors) {
    const dtype = FILE_DTYPE[tensor.dtype];
    if (!dtype) throw new SpinNativeError(`safetensors: tensor '${name}' has dtype ${tensor.dtype}, which safetensors cannot hold`, "DTYPE", "safetensors");
    const bytes = tensor.nbytes;
    header[name] = { dtype, shape: tensor.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((Buffer.byteLength(json) + 8) % 8)) % 8);
  const body = Buffer.from(json, "utf8");
  const out = Buffer.alloc(8 + body.length);
  out.writeBigUInt64LE(BigInt(body.length), 0);
  body.copy(out, 8);
  return out;
}

/** Writes one safetensors file atomically (temp file, fsync, rename). */
export async function saveSafetensors(file: string, tensors: Record<string, Tensor>, metadata: Record<string, string> = { format: "pt" }): Promise<void> {
  const entries = Object.entries(tensors).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  await native.writeSafetensors(file, encodeHeader(entries, metadata), entries.map(([, t]) => Tensor.handleOf(t)));
}

export const SINGLE_FILE = "model.safetensors";
export const INDEX_FILE = "model.safetensors.index.json";

export interface SaveCheckpointOptions {
  /** Largest shard in bytes; a checkpoint above it is split with an index (default 5 GB, as transformers). */
  maxShardBytes?: number;
}

/**
 * Writes tensors as `model.safetensors`, or as `model-0000k-of-0000n.safetensors` shards plus
 * `model.safetensors.index.json` when they exceed `maxShardBytes`.
 */
export async function saveCheckpointTensors(dir: string, tensors: Record<string, Tensor>, options: SaveCheckpointOptions = {}): Promise<void> {
  const limit = options.maxShardBytes ?? 5_000_000_000;
  const names = Object.keys(tensors).sort();
  const shards: string[][] = [[]];
  let shardBytes = 0;
  for (const name of names) {
    const bytes = tensors[name]!.nbytes;
    if (shardBytes > 0 && shardBytes + bytes > limit) {
      shards.push([]);
      shardBytes = 0;
    }
    shards.at(-1)!.push(name);
    shardBytes += bytes;
  }
  if (shards.length === 1) {
    await saveSafetensors(path.join(dir, SINGLE_FILE), tensors);
    return;
  }
  const pad = (n: number) => String(n).padStart(5, "0");
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  for (const [k, shard] of shards.entries()) {
    const file = `model-${pad(k + 1)}-of-${pad(shards.length)}.safetensors`;
    await saveSafetensors(path.join(dir, file), Object.fromEntries(shard.map((n) => [n, tensors[n]!])));
    for (const name of shard) {
      weightMap[name] = file;
      totalSize += tensors[name]!.nbytes;
    }
  }
  const index = { metadata: { total_size: totalSize }, weight_map: weightMap };
  await writeFileAtomic(path.join(dir, INDEX_FILE), JSON.stringify(index, null, 2) + "\n");
}

/** Loads a checkpoint folder: the sharded index when present, else `model.safetensors`. */
export async function loadCheckpointTensors(dir: string, options: LoadOptions = {}): Promise<Record<string, Tensor>> {
  const indexPath = path.join(dir, INDEX_FILE);
  const hasIndex = await stat(indexPath).then(() => true, () => false);
  if (!hasIndex) {
    const single = path.join(dir, SINGLE_FILE);
    if (!(await stat(single).then(() => true, () => false))) {
      throw new SpinNativeError(`checkpoint: ${dir} holds neither ${SINGLE_FILE} nor ${INDEX_FILE} (only safetensors checkpoints are read)`, "IO", "checkpoint");
    }
    return loadSafetensors(single, options);
  }
  let weightMap: Record<string, unknown>;
  try {
    const index = JSON.parse(await readFile(indexPath, "utf8")) as { weight_map?: unknown };
    if (index.weight_map === null || typeof index.weight_map !== "object") throw new Error("weight_map is missing");
    weightMap = index.weight_map as Record<string, unknown>;
  } catch (error) {
    throw new SpinNativeError(`checkpoint: ${indexPath}: ${(error as Error).message}`, "IO", "checkpoint");
  }
  const shards = new Set<string>();
  for (const [name, file] of Object.entries(weightMap)) {
    if (typeof file !== "string" || file.includes("/") || file.includes("\\")) {
      throw new SpinNativeError(`checkpoint: ${indexPath}: weight_map['${name}'] is not a file name in the folder`, "IO", "checkpoint");
    }
    shards.add(file);
  }
  const tensors: Record<string, Tensor> = {};
  for (const shard of [...shards].sort()) Object.assign(tensors, await loadSafetensors(path.join(dir, shard), options));
  const missing = Object.keys(weightMap).filter((name) => !(name in tensors));
  if (missing.length > 0) {
    for (const t of Object.values(tensors)) t.dispose();
    throw new SpinNativeError(`checkpoint: ${indexPath} lists tensors no shard holds: ${missing.slice(0, 5).join(", ")}`, "IO", "checkpoint");
  }
  return tensors;
}
