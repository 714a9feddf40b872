// Helpers of the tests that run the compiled library in child processes (cli.test.ts,
// pipeline.test.ts, examples.test.ts): rebuilding dist/ when lib/ is newer, spawning
// `node dist/lib/cli.js …` (or an example) with one OpenMP thread, and a tiny Hugging Face
// checkpoint folder (the char-level tokenizer of tiny-tokenizer.ts + a tiny llama of its
// vocabulary) with prompts it can answer.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, readdirSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";

import { type SpinRow, loadSafetensors } from "../lib/index.js";
import { writeCharModel } from "./tiny-char-model.js";
import { TINY_TOKENIZER_CONFIG, assistant, tinyTokenizerJson, user } from "./tiny-tokenizer.js";

export const REPO = path.resolve(import.meta.dirname, "..");
export const CLI = path.join(REPO, "dist", "lib", "cli.js");

/** Rebuilds dist/ when a source file (lib/, types/, examples/) is newer than it: the children import the compiled code. */
export function ensureDist(): void {
  const built = path.join(REPO, "dist", "lib", "index.js");
  const newest = (d: string): number =>
    !existsSync(d)
      ? 0
      : readdirSync(d, { withFileTypes: true }).reduce((m, e) => {
          const p = path.join(d, e.name);
          return Math.max(m, e.isDirectory() ? newest(p) : e.name.endsWith(".ts") ? statSync(p).mtimeMs : 0);
        }, 0);
  const source = Math.max(newest(path.join(REPO, "lib")), newest(path.join(REPO, "types")), newest(path.join(REPO, "examples")));
  const outputs = [built, path.join(REPO, "dist", "examples", "spin-on-checkpoint.js"), path.join(REPO, "dist", "examples", "training-service.js")];
  if (outputs.some((f) => !existsSync(f) || statSync(f).mtimeMs < source)) {
    try {
      execFileSync(path.join(REPO, "node_modules", ".bin", "tsc"), ["-p", "tsconfig.build.json"], { cwd: REPO, stdio: "pipe" });
    } catch (error) {
      const e = error as { stdout?: Buffer; stderr?: Buffer };
      throw new Error(`building dist/ for the child processes failed:\n${e.stdout?.toString() ?? ""}${e.stderr?.toString() ?? ""}`);
    }
  }
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface Child {
  process: ChildProcess;
  /** stdout lines so far. */
  lines: string[];
  exit: Promise<Exit>;
}

/** Spawns `node <script> …args` in the repo with OMP_NUM_THREADS=1; `onLine` sees every stdout line. */
export function spawnNode(script: string, args: string[], onLine?: (line: string, child: ChildProcess) => void, env: Record<string, string> = {}): Child {
  const child = spawn(process.execPath, [script, ...args], {
    cwd: REPO,
    env: { ...process.env, OMP_NUM_THREADS: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  let stdout = "";
  let stderr = "";
  let buffer = "";
  child.stdout!.on("data", (chunk: Buffer) => {
    const text = chunk.toString();
    stdout += text;
    buffer += text;
    let at: number;
    while ((at = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, at);
      buffer = buffer.slice(at + 1);
      lines.push(line);
      onLine?.(line, child);
    }
  });
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exit = new Promise<Exit>((resolve) => child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { process: child, lines, exit };
}

/** Runs `spin-native …args` (the compiled CLI) to its end. */
export function runCli(args: string[]): Promise<Exit> {
  return spawnNode(CLI, args).exit;
}

/** A tiny HF checkpoint folder: config.json + model.safetensors (a 2-layer llama, vocab 35) + tokenizer.json + tokenizer_config.json. */
export async function writeTinyCheckpoint(dir: string, seed = 1234): Promise<void> {
  await writeCharModel(dir, "llama", seed);
  writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(tinyTokenizerJson()));
  writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify(TINY_TOKENIZER_CONFIG));
}

const WORDS = ["cat", "dog", "sun", "sky", "red", "owl", "ant", "bee", "fig", "jam", "kit", "log", "map", "nut", "oak", "pig", "rat", "sea", "tea", "van", "web", "yak", "zip", "hut", "elm", "fox", "gum", "ink"];

/**
 * `n` SFT rows in the original's schema: {real: [user(x), assistant(y)], generated: [user(x), assistant("")]}
 * (the generated turn empty before generation); x "say <word>", y the word spelled backwards.
 * Every prompt is 10 + 7 tokens of the tiny tokenizer's Zephyr template.
 */
export function sftRows(n: number): SpinRow[] {
  return Array.from({ length: n }, (_, i) => {
    const word = WORDS[i % WORDS.length]!;
    const x = `say ${word}${i >= WORDS.length ? "?" : ""}`;
    const y = [...word].reverse().join("");
    return { real: [user(x), assistant(y)], generated: [user(x), assistant("")] };
  });
}

/**
 * The largest difference between two saved models' tensors, relative to max(floor, |b|)
 * (floor keeps near-zero weights from dominating).
 */
export async function maxRelativeDifference(fileA: string, fileB: string, floor = 1e-2): Promise<number> {
  const [a, b] = await Promise.all([loadSafetensors(fileA), loadSafetensors(fileB)]);
  let worst = 0;
  for (const [name, t] of Object.entries(a)) {
    const x = t.toTypedArray() as Float32Array;
    const y = b[name]!.toTypedArray() as Float32Array;
    x.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - y[i]!) / Math.max(floor, Math.abs(y[i]!)))));
  }
  for (const t of [...Object.values(a), ...Object.values(b)]) t.dispose();
  return worst;
}
