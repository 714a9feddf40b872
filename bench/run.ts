// `npm run bench [workload ...]`: runs benchmarks, prints a table per workload and records
// it under bench/results/. Workloads: machine (default), threads.
import { measureMachine } from "./machine.js";
import { type Row, machine, printTable, record } from "./report.js";
import { measureThreads } from "./threads.js";

const workloads: Record<string, () => Promise<Row[]>> = {
  machine: async () => (await measureMachine()).rows,
  threads: measureThreads,
};

const requested = process.argv.slice(2);
const names = requested.length > 0 ? requested : ["machine"];
for (const name of names) {
  if (!workloads[name]) {
    console.error(`unknown workload '${name}'; known: ${Object.keys(workloads).join(", ")}`);
    process.exit(2);
  }
}
console.log("machine:", JSON.stringify(machine()));
for (const name of names) {
  const rows = await workloads[name]!();
  printTable(name, rows);
  if (!process.env.BENCH_NO_RECORD) console.log(`recorded ${record(name, rows)}`);
}
