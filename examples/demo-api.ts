// The SPIN demo through the library API — what `spin-native demo` does, in a dozen lines:
// θ0 (the embedded tiny model, under-trained on letter reversal and digit sorting) → SPIN
// iterations and SPIN with an SFT term, each scored on held-out prompts, against continued SFT
// with the same number of updates; then the table and the run report.
//
// Run it from the repository root (a few minutes on a 2-core CPU):
//   npx tsc -p tsconfig.build.json
//   node dist/examples/demo-api.js [run-folder] [iterations]
// Defaults: ./spin-demo-api-run, 3 iterations. Re-running with the same folder resumes where
// the last run stopped (finished stages are not redone).
//
// In your own project, import from "spin-native" instead of "../lib/…".
import path from "node:path";
import { pathToFileURL } from "node:url";

import { formatDemoTable, runDemo } from "../lib/run/demo/run.js";

const USAGE = `usage: node dist/examples/demo-api.js [run-folder] [iterations]
  run-folder  where the run lives (default ./spin-demo-api-run); re-running resumes it
  iterations  SPIN iterations, an integer >= 1 (default 3)`;

/** Runs the demo; returns the process exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  if (argv.length > 2 || argv.some((a) => a.startsWith("-"))) {
    console.error(`demo-api: unexpected arguments ${argv.join(" ")}\n${USAGE}`);
    return 2;
  }
  const runDir = path.resolve(argv[0] ?? "spin-demo-api-run");
  const iterations = argv[1] === undefined ? 3 : Number(argv[1]);
  if (!Number.isInteger(iterations) || iterations < 1) {
    console.error(`demo-api: iterations must be an integer >= 1, got '${argv[1]}'\n${USAGE}`);
    return 2;
  }

  const result = await runDemo({ runDir, iterations, log: (line) => console.log(line) });

  console.log(`\nSPIN demo, ${iterations} iteration(s), ${result.seconds.toFixed(0)} s (run folder ${runDir})\n`);
  console.log(formatDemoTable(result.rows));
  // result.rows holds the same numbers as data: label, updates, scores (overall and per task), margins.
  const best = result.rows.reduce((a, b) => (b.scores.accuracy > a.scores.accuracy ? b : a));
  console.log(`\nbest held-out exact match: ${(100 * best.scores.accuracy).toFixed(1)}% (${best.label})`);
  console.log(`final SPIN model: ${result.spins[0]!.finalModel}`);
  console.log(`report: ${path.join(runDir, "report.html")}`);
  return 0;
}

// Run main only when this file is the program (importing it runs nothing).
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (error: unknown) => {
      console.error(`demo-api: ${error instanceof Error ? error.message : String(error)}`);
      process.exitCode = 1;
    },
  );
}
