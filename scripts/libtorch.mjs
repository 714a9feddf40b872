#!/usr/bin/env node
// Finds libtorch for both builds (binding.gyp and CMakeLists.txt), in one order:
//   1. LIBTORCH            a libtorch folder (include/, lib/, share/cmake/Torch), or
//                          "system" for the system's (Debian's libtorch-dev)
//   2. Torch_DIR, then CMAKE_PREFIX_PATH entries
//   3. .torch/cpu/torch    the pip torch that scripts/torch-wheel.sh installs into this checkout
//   4. the cmake prefix of an importable Python torch (its bundled libtorch, CUDA included)
//   5. the system (Debian's libtorch-dev)
// For a CUDA libtorch it also finds the CUDA runtime headers and nccl.h of the same CUDA
// (the nvidia-* wheels beside pip torch first, then NCCL_HOME / CUDA_HOME / /usr/local/cuda);
// SPIN_NCCL=OFF builds without NCCL.
// Prints what a build asks for: --cmake-dir, --lib-dir, --nccl-include, --cuda-include, --cuda-toolkit, --nvrtc, --cxx-standard, --openmp, --include, --cflags, --libs, --ldflags,
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
  if (process.env.LIBTORCH === "system") {
    const system = SYSTEM_CMAKE_DIRS.find(hasConfig);
    if (!system) throw new Error("LIBTORCH=system, but no system libtorch (Debian: apt-get install -y libtorch-dev)");
    return { dir: system, origin: "system" };
  }
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
  const checkout = fromPrefix(path.join(root, ".torch", "cpu", "torch"));
  if (checkout) return { dir: checkout, origin: "checkout (.torch/cpu, scripts/torch-wheel.sh)" };
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
  // libtorch 2.x headers need C++20 (its TorchConfig says so on the torch target); never
  // below C++17, which this code needs.
  const cxxStandard = Math.max(17, Number(/CXX_STANDARD\s+(\d+)/.exec(config)?.[1] ?? 17));
  const cuda = existsSync(path.join(libDir, "libtorch_cuda.so"));
  // ATen's parallel_for is an inline OpenMP loop: the addon's own loops run on libtorch's
  // threads only when compiled with -fopenmp. No OpenMP library is linked: GCC's GOMP_* calls
  // bind at load to the libgomp that libtorch_cpu already loaded (one thread pool, not two).
  // Linux and GCC only: clang would call libomp's __kmpc_* entry points, which libgomp lacks.
  const atenConfig = path.join(prefix, "include", "ATen", "Config.h");
  const gcc = process.platform === "linux" && !/clang/.test(process.env.CXX ?? "");
  const openmp = gcc && existsSync(atenConfig) && /#define AT_PARALLEL_OPENMP 1/.test(readFileSync(atenConfig, "utf8"));
  // The system's own library folders (searched by the dynamic loader): no RPATH needed.
  const system = /^\/usr\/lib(\/[^/]*-linux-gnu[^/]*)?$/.test(libDir);
  // pip torch's own libraries sit in site-packages/torch/lib, the nvidia-* wheels beside it.
  const wheels = path.resolve(libDir, "..", "..", "nvidia");
  const toolkit = [process.env.CUDA_HOME, process.env.CUDA_PATH, "/usr/local/cuda"].filter(Boolean);
  const firstWith = (file, dirs) => dirs.find((d) => existsSync(path.join(d, file))) ?? null;
  const cudaInclude = cuda
    ? firstWith("cuda_runtime_api.h", [
        ...(existsSync(wheels) ? readdirSync(wheels).map((d) => path.join(wheels, d, "include")) : []),
        ...toolkit.map((d) => path.join(d, "include")),
      ])
    : null;
  const ncclInclude =
    cuda && process.env.SPIN_NCCL !== "OFF"
      ? firstWith("nccl.h", [
          path.join(wheels, "nccl", "include"),
          ...(process.env.NCCL_HOME ? [path.join(process.env.NCCL_HOME, "include")] : []),
          ...toolkit.map((d) => path.join(d, "include")),
        ])
      : null;
  // TorchConfig's CUDA part (FindCUDA) needs the toolkit's root (nvcc may be a wrapper outside
  // it) and libnvrtc, which a toolkit installed without its libraries lacks and the wheels carry.
  const cudaToolkit = cuda ? (toolkit.find((d) => existsSync(path.join(d, "bin", "nvcc"))) ?? null) : null;
  const libDirs = [
    ...(existsSync(wheels) ? readdirSync(wheels).map((d) => path.join(wheels, d, "lib")) : []),
    ...toolkit.flatMap((d) => [path.join(d, "lib64"), path.join(d, "lib")]),
  ];
  const nvrtcDir = cuda ? libDirs.find((d) => existsSync(d) && readdirSync(d).some((f) => f.startsWith("libnvrtc.so"))) : null;
  const nvrtc = nvrtcDir ? path.join(nvrtcDir, readdirSync(nvrtcDir).filter((f) => f.startsWith("libnvrtc.so")).sort()[0]) : null;
  // c10d's Gloo backend needs gloo's headers, which pip torch does not ship (Debian: libgloo-dev).
  const glooHeaders = ["/usr", "/usr/local", ...toolkit].some((d) => existsSync(path.join(d, "include", "gloo", "algorithm.h")));
  return {
    origin,
    cmakeDir: dir,
    prefix,
    include: [path.join(prefix, "include"), path.join(prefix, "include", "torch", "csrc", "api", "include")],
    libDir,
    abi,
    version: version ?? "unknown",
    cxxStandard,
    openmp,
    cuda,
    cudaInclude,
    cudaToolkit,
    nvrtc,
    ncclInclude,
    glooHeaders,
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

// What a build silently loses otherwise: distributed backends.
function warnings(lib) {
  if (!lib.glooHeaders) {
    process.stderr.write("spin-native: gloo headers not found (Debian: apt-get install libgloo-dev): no Gloo backend, CPU tensors get no collectives\n");
  }
  if (lib.cuda && !lib.ncclInclude) {
    process.stderr.write(
      `spin-native: CUDA libtorch without NCCL (${process.env.SPIN_NCCL === "OFF" ? "SPIN_NCCL=OFF" : "nccl.h not found; set NCCL_HOME"}): CUDA tensors get no collectives\n`,
    );
  }
  if (lib.cuda && !lib.cudaInclude) {
    throw new Error("CUDA libtorch, but no CUDA runtime headers (cuda_runtime_api.h): install the CUDA toolkit or set CUDA_HOME");
  }
}

function output(flag) {
  if (flag === "--sources") return sources().join(" ");
  const lib = describe();
  switch (flag) {
    case "--describe":
      return JSON.stringify(lib, null, 2);
    case "--cmake-dir":
      return lib.cmakeDir;
    case "--lib-dir":
      return lib.libDir;
    case "--nccl-include":
      return lib.ncclInclude ?? "";
    case "--cuda-include":
      return lib.cudaInclude ?? "";
    case "--cuda-toolkit":
      return lib.cudaToolkit ?? "";
    case "--nvrtc":
      return lib.nvrtc ?? "";
    case "--cxx-standard":
      return String(lib.cxxStandard);
    case "--openmp":
      return lib.openmp ? "-fopenmp" : "";
    case "--include":
      return lib.include.join(" ");
    case "--cflags":
      // -isystem hides libtorch's own warnings; /usr/include already is one (and must stay last).
      warnings(lib);
      return [
        `-std=c++${lib.cxxStandard}`,
        `-D_GLIBCXX_USE_CXX11_ABI=${lib.abi}`,
        ...(lib.openmp ? ["-fopenmp"] : []),
        ...(lib.ncclInclude ? ["-DSPIN_WITH_NCCL"] : []),
        // The wheels' CUDA headers include the toolkit's own (crt/host_config.h): both, wheels first.
        ...[...lib.include, lib.cudaInclude, lib.cudaToolkit && path.join(lib.cudaToolkit, "include"), lib.ncclInclude]
          .filter((d) => d && d !== "/usr/include")
          .map((d) => `-isystem${d}`),
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
      throw new Error(`unknown flag ${flag}; use --describe, --cmake-dir, --lib-dir, --nccl-include, --cuda-include, --cuda-toolkit, --nvrtc, --cxx-standard, --openmp, --include, --cflags, --libs, --ldflags or --sources`);
  }
}

try {
  process.stdout.write(output(process.argv[2] ?? "--describe") + "\n");
} catch (error) {
  process.stderr.write(`scripts/libtorch.mjs: ${error.message}\n`);
  process.exit(1);
}
