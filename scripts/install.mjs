#!/usr/bin/env node
// `npm install` hook. A packed spin-native carries a prebuilt addon (prebuilds/<platform>-<arch>/)
// compiled against one libtorch. Use it when it loads against the libtorch of this machine
// and that libtorch is the version it was built for (lib/core/native.ts checks); otherwise compile
// from source against the libtorch scripts/libtorch.mjs finds, saying why. A clone has no
// prebuild and always compiles. `npm install --build-from-source` skips the prebuild.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const say = (line) => process.stderr.write(`spin-native: ${line}\n`);

function prebuild() {
  const dir = path.join(root, "prebuilds", `${process.platform}-${process.arch}`);
  if (!existsSync(dir)) return null;
  const file = readdirSync(dir).find((name) => name.endsWith(".node"));
  return file ? path.join(dir, file) : null;
}

// Loads the prebuild in a child process (a failed dlopen cannot be undone in this one).
function tryPrebuild(file) {
  const probe = spawnSync(
    process.execPath,
    [
      "--input-type=module",
      "-e",
      'const { runtimeInfo } = await import("./dist/lib/core/runtime.js"); console.log(runtimeInfo().torchVersion);',
    ],
    { cwd: root, env: { ...process.env, SPIN_NATIVE_ADDON: file }, encoding: "utf8", timeout: 120_000 },
  );
  if (probe.status === 0) return { ok: true, version: probe.stdout.trim() };
  const reason = (probe.stderr || probe.error?.message || "").split("\n").find((line) => /\S/.test(line) && !/^\s+at /.test(line));
  return { ok: false, reason: reason ?? `exit ${probe.status}` };
}

function compile() {
  // npm hands lifecycle scripts its bundled node-gyp; a clone has its own devDependency.
  const local = path.join(root, "node_modules", "node-gyp", "bin", "node-gyp.js");
  const nodeGyp = process.env.npm_config_node_gyp || (existsSync(local) ? local : null);
  const [command, args] = nodeGyp ? [process.execPath, [nodeGyp, "rebuild", "-j", "max"]] : ["node-gyp", ["rebuild", "-j", "max"]];
  const describe = spawnSync(process.execPath, [path.join(root, "scripts", "libtorch.mjs"), "--describe"], { encoding: "utf8" });
  if (describe.status !== 0) {
    say(`cannot compile the addon: ${describe.stderr.trim()}`);
    process.exit(1);
  }
  const lib = JSON.parse(describe.stdout);
  say(`compiling the addon against libtorch ${lib.version} (${lib.origin}: ${lib.libDir}); this takes a few minutes`);
  const build = spawnSync(command, args, { cwd: root, stdio: "inherit" });
  if (build.status !== 0) {
    say("compiling the addon failed (see above). `node scripts/libtorch.mjs --describe` shows the libtorch found; README, Building");
    process.exit(build.status ?? 1);
  }
}

const buildFromSource = process.env.npm_config_build_from_source === "true";
const file = buildFromSource ? null : prebuild();
if (file && existsSync(path.join(root, "dist", "lib", "core", "runtime.js"))) {
  const result = tryPrebuild(file);
  if (result.ok) {
    // A build from an earlier install would win over the prebuild at load (node-gyp-build
    // prefers build/Release): it was made for another libtorch, so it goes.
    rmSync(path.join(root, "build"), { recursive: true, force: true });
    say(`using the prebuilt addon (libtorch ${result.version}): ${path.relative(root, file)}`);
    process.exit(0);
  }
  say(`the prebuilt addon does not fit this machine (${result.reason}); compiling from source`);
}
compile();
