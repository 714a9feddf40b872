// Atomic writes: a reader never sees a half-written file or folder where a good one was.
import { randomBytes } from "node:crypto";
import { mkdir, open, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Fills a temp file beside `file` through `fill`, fsyncs it, renames it over `file` and fsyncs
 * the folder. On failure the temp file is removed and `file` is untouched.
 */
export async function replaceFileAtomic(file: string, fill: (temp: string) => Promise<void>): Promise<void> {
  const temp = `${file}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    await fill(temp);
    const handle = await open(temp, "r+");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  await fsyncDir(path.dirname(path.resolve(file)));
}

/** Writes `data` to a temp file beside `file`, fsyncs it, and renames it over `file`. */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  await replaceFileAtomic(file, (temp) => writeFile(temp, data));
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * Fills a fresh folder through `fill`, then swaps it in for `dir`: the old folder is moved
 * aside, the new one renamed into place, the old one removed. At no moment does `dir` hold
 * a mix of old and new files.
 */
export async function writeDirAtomic(dir: string, fill: (tempDir: string) => Promise<void>): Promise<void> {
  const parent = path.dirname(path.resolve(dir));
  await mkdir(parent, { recursive: true });
  const tag = `${process.pid}-${randomBytes(4).toString("hex")}`;
  const temp = `${path.resolve(dir)}.tmp-${tag}`;
  await mkdir(temp);
  try {
    await fill(temp);
    await fsyncDir(temp);
  } catch (error) {
    await rm(temp, { recursive: true, force: true });
    throw error;
  }
  const old = `${path.resolve(dir)}.old-${tag}`;
  const hadOld = await exists(dir);
  if (hadOld) await rename(dir, old);
  await rename(temp, dir);
  await fsyncDir(parent);
  if (hadOld) await rm(old, { recursive: true, force: true });
}
