// The layers of lib/ (docs/architecture.md): every import points down or within its room,
// and only core/native.ts loads the addon. Fails on the first import that points up.
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { describe, expect, it } from "vitest";

const LIB = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "lib");

/** Rooms from the bottom up; a file may import from its own room and the rooms below it. */
const ROOMS = ["core", "model", "data", "distributed", "spin", "run"] as const;
/** The two entry points sit above every room. */
const ENTRIES = ["index.ts", "cli.ts"];

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sources(full);
    return entry.name.endsWith(".ts") ? [full] : [];
  });
}

function roomOf(file: string): number {
  const relative = path.relative(LIB, file).split(path.sep);
  if (relative.length === 1) {
    if (!ENTRIES.includes(relative[0]!)) throw new Error(`lib/${relative[0]} is in no room`);
    return ROOMS.length;
  }
  const room = ROOMS.indexOf(relative[0] as (typeof ROOMS)[number]);
  if (room < 0) throw new Error(`lib/${relative[0]}/ is not a room (${ROOMS.join(", ")})`);
  return room;
}

/** Relative imports of a file (static, dynamic and type-only), resolved to .ts paths. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [...text.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)].map((m) => path.resolve(path.dirname(file), m[1]!).replace(/\.js$/, ".ts"));
}

/** The imports of `file` among `targets` that point to a higher room. */
function upward(file: string, targets: string[]): string[] {
  return targets.filter((target) => roomOf(target) > roomOf(file)).map((target) => `${path.relative(LIB, file)} → ${path.relative(LIB, target)}`);
}

describe("lib/ layers", () => {
  const files = sources(LIB);

  it("has every file in a room", () => {
    for (const file of files) expect(() => roomOf(file)).not.toThrow();
  });

  it("imports point down or within a room", () => {
    expect(files.flatMap((file) => upward(file, importsOf(file)))).toEqual([]);
  });

  it("resolves every relative import to a file of lib/", () => {
    for (const file of files) for (const target of importsOf(file)) expect(files, `${path.relative(LIB, file)} imports ${target}`).toContain(target);
  });

  it("loads the addon only in core/native.ts", () => {
    const loaders = files.filter((file) => /require\(|\.node["']/.test(readFileSync(file, "utf8")));
    expect(loaders.map((file) => path.relative(LIB, file))).toEqual([path.join("core", "native.ts")]);
  });

  it("reports an upward import (the check can fail)", () => {
    const tensor = path.join(LIB, "core", "tensor.ts");
    const pipeline = path.join(LIB, "run", "pipeline.ts");
    expect(upward(tensor, [pipeline, path.join(LIB, "core", "errors.ts")])).toEqual([`core${path.sep}tensor.ts → run${path.sep}pipeline.ts`]);
    expect(upward(pipeline, [tensor])).toEqual([]);
  });
});
