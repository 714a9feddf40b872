// The addon and the libtorch it runs on: what the binary records about its build, what
// runtimeInfo reports of the libtorch loaded, and the loader's refusal of another libtorch.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";

import { describe, expect, test } from "vitest";

import { runtimeInfo } from "../lib/index.js";

const root = path.resolve(import.meta.dirname, "..");

/** Version of the libtorch whose libraries are in libDir (its TorchConfigVersion.cmake). */
function versionOf(libDir: string): string | null {
  for (const cmake of [path.join(libDir, "..", "share", "cmake", "Torch"), path.join(libDir, "cmake", "Torch")]) {
    const file = path.join(cmake, "TorchConfigVersion.cmake");
    if (existsSync(file)) return /PACKAGE_VERSION\s+"([0-9.]+)/.exec(readFileSync(file, "utf8"))?.[1] ?? null;
  }
  return null;
}

describe("build information", () => {
  test("the binary records the libtorch it was compiled against, and it is the one loaded", () => {
    const info = runtimeInfo();
    expect(info.builtAgainst.torchVersion).toBe(info.torchVersion);
    expect(info.builtAgainst.torchVersion).toMatch(/^\d+\.\d+\.\d+/);
    if (info.loadedTorchVersion !== "unknown") {
      expect(info.loadedTorchVersion.split("+")[0]).toBe(info.builtAgainst.torchVersion.split("+")[0]);
    }
    // libtorch 2.x headers need C++20; 1.x builds use C++17.
    expect(info.builtAgainst.cxxStandard).toBe(Number(info.torchVersion.split(".")[0]) >= 2 ? 20 : 17);
    expect(info.builtAgainst.nccl).toBe(info.distributedBackends.includes("nccl"));
  });

  test("runtimeInfo names the BLAS, also one linked into libtorch (pip torch's MKL)", () => {
    const info = runtimeInfo();
    expect(info.blasBuild).not.toBe("");
    expect(info.blas).not.toBe("unknown");
    if (!info.blas.startsWith("/")) expect(info.blas).toBe(`${info.blasBuild} (linked into libtorch)`);
  });
});

// Other libtorch builds on this machine (CI installs all three): LD_LIBRARY_PATH wins over
// the addon's RUNPATH, so the addon meets another libtorch as it would on a user's machine.
const loaded = runtimeInfo().torchVersion;
const others = [
  path.join(root, ".torch", "cpu", "torch", "lib"),
  path.join(root, ".torch", "cuda", "torch", "lib"),
  "/usr/lib/x86_64-linux-gnu",
].filter((dir) => existsSync(path.join(dir, "libtorch_cpu.so")) && versionOf(dir) !== null && versionOf(dir) !== loaded);

describe("another libtorch at run time", () => {
  test.runIf(others.length > 0)("is refused with a message that says what to do, never used silently", () => {
    for (const dir of others) {
      const child = spawnSync(
        process.execPath,
        [
          "--input-type=module",
          "-e",
          'const { runtimeInfo } = await import("./dist/lib/index.js"); const i = runtimeInfo(); console.log(i.builtAgainst.torchVersion, i.loadedTorchVersion);',
        ],
        { cwd: root, env: { ...process.env, LD_LIBRARY_PATH: dir }, encoding: "utf8", timeout: 60_000 },
      );
      const context = `with LD_LIBRARY_PATH=${dir} (libtorch ${versionOf(dir)}): ${child.stderr}`;
      if (child.status === 0) {
        // A versioned SONAME (Debian's libtorch_cpu.so.1.13) kept the dynamic loader on the
        // libtorch the addon was built for: it ran on that one, not on the other.
        const [built, used] = child.stdout.trim().split(" ");
        expect(used, context).toBe(built);
        continue;
      }
      // Otherwise either the dynamic loader stops it (undefined symbols) or the version check.
      expect(child.stderr, context).toMatch(
        new RegExp(`built against libtorch ${loaded.replace(/\./g, "\\.")}.*but libtorch .* was loaded|do not match \\(another version or C\\+\\+ ABI\\)`),
      );
      expect(child.stderr, context).toMatch(/Rebuild/);
    }
  });
});
