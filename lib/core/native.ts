// The only door to the native addon. Loads it with node-gyp-build (a prebuild for this
// platform, else build/Release), explains load failures, and sets the thread-pool
// environment that must be in place before libtorch's OpenMP runtime starts.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

import type { NativeBinding } from "./native-types.js";
import { SpinNativeError } from "./errors.js";

const require = createRequire(import.meta.url);

/** The package root: the nearest folder above this file that holds package.json. */
function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, "package.json"))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error("spin-native: package.json not found above " + fileURLToPath(import.meta.url));
    dir = parent;
  }
  return dir;
}

/**
 * Thread-pool settings chosen by measurement on a 2-core machine (README, "Threads and
 * BLAS"): libgomp's idle workers must sleep rather than spin, or they steal the cores that
 * OpenBLAS and the next op need. libgomp reads this once, when it is loaded, so it is set
 * here, before the addon; a value the user exported wins.
 */
const THREAD_ENVIRONMENT: Record<string, string> = {
  OMP_WAIT_POLICY: "PASSIVE",
};

function explainLoadFailure(error: unknown, root: string): string {
  const reason = error instanceof Error ? error.message : String(error);
  const fixes: string[] = [];
  if (/No native build was found/.test(reason)) {
    fixes.push(
      "The addon is not built for this platform. Build it from source: `npm run build:addon` " +
        "(needs g++, python3 and libtorch: `apt-get install -y libtorch-dev libopenblas0-pthread` on Debian 12).",
    );
  } else if (/lib(torch|c10)[^ ]*\.so.*cannot open shared object file/.test(reason)) {
    fixes.push(
      "libtorch is not installed or not on the library path. On Debian 12: " +
        "`apt-get install -y libtorch-dev libopenblas0-pthread`; for another libtorch, add its lib/ folder " +
        "to LD_LIBRARY_PATH or rebuild with LIBTORCH=/path/to/libtorch `npm run build:addon`.",
    );
  } else if (/lib(cuda|cudart|nvrtc|cublas|cudnn|nccl)[^ ]*\.so/.test(reason)) {
    fixes.push(
      "The addon was built against a CUDA libtorch, but this machine has no NVIDIA driver or CUDA runtime. " +
        "Rebuild against a CPU libtorch (`npm run build:addon` with Debian's libtorch-dev) or run on a GPU machine.",
    );
  } else if (/undefined symbol|version `[^']+' not found|wrong ELF class/.test(reason)) {
    fixes.push(
      "The addon and the libtorch found at run time do not match (another version or C++ ABI). " +
        "Rebuild from source against the libtorch you have: `npm run build:addon`.",
    );
  } else {
    fixes.push("Rebuild from source (`npm run build:addon`) and check `node scripts/libtorch.mjs --describe`.");
  }
  return `spin-native: the native addon failed to load from ${root}.\n${fixes.join("\n")}\nCause: ${reason}`;
}

/**
 * SPIN_NATIVE_ADDON names a .node file to load instead of node-gyp-build's pick (a prebuild
 * or build/Release): e.g. the cmake-js build, or one built against a CUDA libtorch.
 */
function load(): NativeBinding {
  for (const [name, value] of Object.entries(THREAD_ENVIRONMENT)) process.env[name] ??= value;
  const root = packageRoot();
  const explicit = process.env.SPIN_NATIVE_ADDON;
  let binding: NativeBinding;
  try {
    binding = explicit
      ? (require(path.resolve(root, explicit)) as NativeBinding)
      : (require("node-gyp-build") as (dir: string) => NativeBinding)(root);
  } catch (error) {
    throw new Error(explainLoadFailure(error, root), { cause: error });
  }
  binding.registerErrorClass(SpinNativeError);
  checkLibtorch(binding);
  return binding;
}

/**
 * A binary compiled against one libtorch must not run on another: the C++ API has no stable
 * ABI, and a mismatch that the dynamic loader lets through fails later, or silently. Compare
 * the version the addon was built against with the one libtorch reports at run time.
 */
function checkLibtorch(binding: NativeBinding): void {
  const info = binding.runtimeInfo();
  const built = info.builtAgainst.torchVersion;
  const loaded = info.loadedTorchVersion;
  const release = (version: string) => /^\d+\.\d+\.\d+/.exec(version)?.[0];
  if (loaded === "unknown" || release(built) === release(loaded)) return;
  throw new SpinNativeError(
    `the addon was built against libtorch ${built}, but libtorch ${loaded} was loaded at run time. ` +
      "Rebuild it against the libtorch you have (`npm rebuild spin-native`, or `npm run build:addon` in a clone; " +
      "`node scripts/libtorch.mjs --describe` shows which libtorch a build finds), or install libtorch " +
      `${built} where the addon looks for it (LD_LIBRARY_PATH).`,
    "TORCH",
    "load",
  );
}

/** The raw binding. Use the typed wrappers in lib/ instead of calling it directly. */
export const native: NativeBinding = load();
