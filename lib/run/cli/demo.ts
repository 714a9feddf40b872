// `spin-native demo`: the SPIN demo on the embedded tiny model and data (run/demo/).
import path from "node:path";

import { SpinNativeError } from "../../core/errors.js";
import { formatDemoTable, runDemo } from "../demo/run.js";
import { splitArguments } from "./common.js";
import { USAGE } from "./usage.js";

export async function demo(argv: string[]): Promise<void> {
  const { flags } = splitArguments(argv);
  const option = (name: string) => flags.find((f) => f.startsWith(`--${name}=`))?.split("=")[1];
  const integer = (name: string, fallback: number, min: number) => {
    const text = option(name);
    if (text !== undefined && (!/^\d+$/.test(text) || Number(text) < min || Number(text) >= 2 ** 32)) {
      throw new SpinNativeError(`demo: --${name} takes an integer in [${min}, 2^32), got '${text}'\n${USAGE.demo}`, "INVALID_ARGUMENT", "cli");
    }
    return text === undefined ? fallback : Number(text);
  };
  const iterations = integer("iterations", 3, 1);
  const seed = integer("seed", 42, 0);
  const runDir = path.resolve(option("out") ?? "spin-demo-run");
  const result = await runDemo({ runDir, iterations, seed });
  console.log(`\nSPIN demo (run folder ${runDir}, ${result.seconds.toFixed(0)} s)\n`);
  console.log(formatDemoTable(result.rows));
  console.log(`\ncontinued SFT, held-out exact match by lr: ${result.sweep.map((s) => `${s.learningRate.toExponential()}: ${(100 * s.accuracy).toFixed(1)}%`).join(", ")}`);
  console.log(`report: ${path.join(runDir, "report.html")}`);
}
