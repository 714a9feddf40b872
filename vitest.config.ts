import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Child processes, not worker threads: libtorch and OpenMP are per process.
    pool: "forks",
    execArgv: ["--expose-gc"],
    // Two cores: files run one after another so timing-sensitive tests (event loop) are fair.
    fileParallelism: false,
    testTimeout: 120_000,
    // CI (.ci/run sets CI=true) retries a failed test once: one of ~2 150 tests across the three
    // legs failed once and not on re-runs (multi-process timing). .ci/run names every failure,
    // and every test that passed only on its retry, at the end of its output.
    retry: process.env.CI ? 1 : 0,
  },
});
