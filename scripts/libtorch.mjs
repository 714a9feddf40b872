#!/usr/bin/env node
// Finds libtorch for both builds (binding.gyp and CMakeLists.txt), in one order:
//   1. LIBTORCH            a libtorch folder (include/, lib/, share/cmake/Torch)
//   2. Torch_DIR, then CMAKE_PREFIX_PATH entries
//   3. the cmake prefix of an importable Python torch (its bundled libtorch, CUDA included)
//   4. the system (Debian's libtorch-dev)
// Prints what a build asks for: --cmake-dir, --include, --cflags, --libs, --ldflags,
// --sources, or --describe (JSON, for humans and the README).
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const CONFIG = "TorchConfig.cmake";
const SYSTEM_CMAKE_DIRS = [
  "/usr/lib/x86_64-linux-gnu/cmake/Torch",
  "/usr/lib/aarch64-linux-gnu/cmake/Torch",
  "/usr/lib/cmake/Torch",
  "/usr/local/share/cmake/Torch",
];

function hasConfig(dir) {
  return Boolean(dir) && existsSync(path.join(dir, CONFIG));
}

function fromPrefix(prefix) {
  for (const sub of ["share/cmake/Torch", "lib/cmake/Torch", "Torch", "."]) {
    const dir = path.join(prefix, sub);
    if (hasConfig(dir)) return dir;
  }
  return null;
}

function pythonTorchPrefix() {
  try {
    const out = execFileSync("python3", ["-c", "import torch.utils; print(torch.utils.cmake_prefix_path)"], {
      stdio: ["ignore", "pipe", "ignore"],
      timeout: 60_000,
    });
    return out.toString().trim() || null;
  } catch {
    return null;
  }
}

function findCmakeDir() {
  if (process.env.LIBTORCH) {
    const dir = fromPrefix(process.env.LIBTORCH);
    if (!dir) throw new Error(`LIBTORCH=${process.env.LIBTORCH} holds no share/cmake/Torch/${CONFIG}`);
    return { dir, origin: "LIBTORCH" };
  }
  if (process.env.Torch_DIR) {
    if (!hasConfig(process.env.Torch_DIR)) throw new Error(`Torch_DIR=${process.env.Torch_DIR} holds no ${CONFIG}`);
    return { dir: process.env.Torch_DIR, origin: "Torch_DIR" };
  }
  for (const prefix of (process.env.CMAKE_PREFIX_PATH ?? "").split(path.delimiter).filter(Boolean)) {
    const dir = fromPrefix(prefix);
    if (dir) return { dir, origin: "CMAKE_PREFIX_PATH" };
  }
  const python = pythonTorchPrefix();
  if (python && fromPrefix(python)) return { dir: fromPrefix(python), origin: "python torch" };
  const system = SYSTEM_CMAKE_DIRS.find(hasConfig);
  if (system) return { dir: system, origin: "system" };
  throw new Error(
    "libtorch not found. Install it (Debian 12: apt-get install -y libtorch-dev libopenblas0-pthread), " +
      "or point LIBTORCH at a libtorch folder, or Torch_DIR at its share/cmake/Torch.",
  );
}

function describe() {
  const { dir, origin } = findCmakeDir();
  // The install prefix is the nearest ancestor holding include/torch (libtorch zip and
  // pip torch: three levels up; Debian: /usr).
  let prefix = path.resolve(dir);
  while (!existsSync(path.join(prefix, "include", "torch")) && path.dirname(prefix) !== prefix) {
    prefix = path.dirname(prefix);
  }
  const libDir = [path.join(prefix, "lib"), path.resolve(dir, "..", "..")].find((d) =>
    existsSync(path.join(d, "libtorch.so")),
  );
  if (!libDir) throw new Error(`libtorch.so not found next to ${dir}`);
  const config = readFileSync(path.join(dir, CONFIG), "utf8");
  const abi = /_GLIBCXX_USE_CXX11_ABI=([01])/.exec(config)?.[1] ?? "1";
  const version = /PACKAGE_VERSION\s+"([0-9.]+)/.exec(
    existsSync(path.join(dir, "TorchConfigVersion.cmake")) ? readFileSync(path.join(dir, "TorchConfigVersion.cmake"), "utf8") : "",
  )?.[1];
  const cuda = existsSync(path.join(libDir, "libtorch_cuda.so"));
  const system = libDir.startsWith("/usr/lib");
  return {
    origin,
    cmakeDir: dir,
    prefix,
    include: [path.join(prefix, "include"), path.join(prefix, "include", "torch", "csrc", "api", "include")],
    libDir,
    abi,
    version: version ?? "unknown",
    cuda,
    rpath: system ? null : libDir,
  };
}

function sources() {
  const found = [];
  const walk = (dir) => {
    for (const name of readdirSync(dir).sort()) {
      const full = path.join(dir, name);
      if (statSync(full).isDirectory()) walk(full);
      else if (name.endsWith(".cc")) found.push(path.relative(root, full));
    }
  };
  walk(path.join(root, "native"));
  return found;
}

function output(flag) {
  if (flag === "--sources") return sources().join(" ");
  const lib = describe();
  switch (flag) {
    case "--describe":
      return JSON.stringify(lib, null, 2);
    case "--cmake-dir":
      return lib.cmakeDir;
    case "--include":
      return lib.include.join(" ");
    case "--cflags":
      // -isystem hides libtorch's own warnings; /usr/include already is one (and must stay last).
      return [
        `-D_GLIBCXX_USE_CXX11_ABI=${lib.abi}`,
        ...lib.include.filter((d) => d !== "/usr/include").map((d) => `-isystem${d}`),
      ].join(" ");
    case "--libs":
      // libtorch_cuda registers its kernels at load: keep it even though no symbol is used.
      return [
        `-L${lib.libDir}`,
        ...(lib.cuda ? ["-Wl,--no-as-needed", "-ltorch_cuda", "-lc10_cuda", "-Wl,--as-needed"] : []),
        "-ltorch",
        "-ltorch_cpu",
        "-lc10",
      ].join(" ");
    case "--ldflags":
      return lib.rpath ? `-Wl,-rpath,${lib.rpath}` : "";
    default:
      throw new Error(`unknown flag ${flag}; use --describe, --cmake-dir, --include, --cflags, --libs, --ldflags or --sources`);
  }
}

try {
  process.stdout.write(output(process.argv[2] ?? "--describe") + "\n");
} catch (error) {
  process.stderr.write(`scripts/libtorch.mjs: ${error.message}\n`);
  process.exit(1);
}
