// Process-wide controls: threads, grad mode, devices, versions and memory statistics.
import { AsyncLocalStorage, createHook } from "node:async_hooks";
import { readFileSync } from "node:fs";

import type { MemoryStats, RuntimeInfo as NativeRuntimeInfo } from "./native-types.js";
import { native } from "./native.js";

export type { MemoryStats };

export interface RuntimeInfo extends NativeRuntimeInfo {
  /**
   * The BLAS libtorch runs on in this process: the shared library's path, or for a BLAS
   * linked into libtorch (pip torch's MKL) its name from libtorch's build configuration.
   */
  blas: string;
}

/**
 * Sets libtorch's intra-op threads. At load spin-native uses every core this process may
 * run on, unless OMP_NUM_THREADS is set.
 */
export function setNumThreads(threads: number): void {
  native.setNumThreads(threads);
}
export function getNumThreads(): number {
  return native.getNumThreads();
}

// Grad mode lives in a libtorch thread-local, which every callback on the JS thread shares.
// An async noGrad marks its own async context; while one is pending, a hook sets the mode as
// each callback starts — off inside such a context, on outside — so the async function is
// covered to its end and nothing running between its awaits is.
const gradOffContext = new AsyncLocalStorage<true>();
const gradModeHook = createHook({
  before() {
    native.setGradEnabled(gradOffContext.getStore() === undefined);
  },
  after() {
    native.setGradEnabled(true);
  },
});
let pendingAsyncNoGrad = 0;

/**
 * Runs `fn` with gradient recording off (PyTorch's `torch.no_grad()`), restoring the previous
 * mode afterwards. When `fn` returns a Promise (an async function), recording stays off for
 * everything `fn` runs until that Promise settles, across its awaits, and only for that:
 * other code running meanwhile records as usual. Native async calls carry the caller's mode
 * over to their worker thread.
 */
export function noGrad<T>(fn: () => T): T {
  let result: T;
  const previous = native.setGradEnabled(false);
  try {
    result = gradOffContext.run(true, fn);
  } finally {
    native.setGradEnabled(previous);
  }
  if (!isThenable(result)) return result;
  // fn's continuations run as later callbacks: the hook is on in time for the first of them.
  if (pendingAsyncNoGrad++ === 0) gradModeHook.enable();
  return Promise.resolve(result).finally(settleAsyncNoGrad) as T;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as { then?: unknown } | null)?.then === "function";
}

function settleAsyncNoGrad(): void {
  if (--pendingAsyncNoGrad === 0) gradModeHook.disable();
}

export function isGradEnabled(): boolean {
  return native.isGradEnabled();
}

/** Whether this libtorch build has CUDA and a GPU is visible. */
export function cudaAvailable(): boolean {
  return native.cudaDeviceCount() > 0;
}
/** Number of visible CUDA devices (0 on a CPU-only build). */
export function deviceCount(): number {
  return native.cudaDeviceCount();
}

/** The BLAS shared library mapped into this process (Linux), e.g. OpenBLAS's OpenMP build. */
function loadedBlas(blasBuild: string): string {
  let maps = "";
  try {
    maps = readFileSync("/proc/self/maps", "utf8");
  } catch {
    // not Linux: fall through to the build configuration
  }
  const library = /\s(\/\S*lib(?:openblas|blas|mkl_rt)\S*\.so\S*)$/m.exec(maps)?.[1];
  return library ?? (blasBuild === "unknown" ? "unknown" : `${blasBuild} (linked into libtorch)`);
}

/** libtorch version, thread settings, and the BLAS and OpenMP configuration. */
export function runtimeInfo(): RuntimeInfo {
  const info = native.runtimeInfo();
  return { ...info, blas: loadedBlas(info.blasBuild) };
}

/** Native tensors alive and the host bytes they report to V8. */
export function memoryStats(): MemoryStats {
  return native.memoryStats();
}
