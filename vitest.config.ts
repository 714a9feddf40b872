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
  },
});
