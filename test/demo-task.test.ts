// The demo's task and its pieces that the demo's numbers rest on: the data (answers recomputed
// here independently), the share of identical pairs, and the report's comparison plots.
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

import { describe, expect, test } from "vitest";

import { DEMO_TASKS, demoSplits, readExamples, sftRow, taskOf } from "../lib/demo/task.js";
import { type SpinRow, SpinNativeError, identicalPairShare } from "../lib/index.js";
import { renderReport } from "../lib/report.js";

describe("demo task", () => {
  const { train, test: heldOut } = demoSplits(400, 60);

  test("balanced, disjoint splits whose answers are the reversed word and the sorted digits", () => {
    for (const task of DEMO_TASKS) {
      expect(train.filter((e) => e.task === task)).toHaveLength(400);
      expect(heldOut.filter((e) => e.task === task)).toHaveLength(60);
    }
    const prompts = new Set(train.map((e) => e.prompt));
    expect(prompts.size).toBe(train.length);
    expect(heldOut.some((e) => prompts.has(e.prompt))).toBe(false);
    for (const e of [...train, ...heldOut]) {
      const [word, input] = e.prompt.split(" ");
      expect(word).toBe(e.task);
      let expected = "";
      if (e.task === "reverse") {
        expect(input).toMatch(/^[a-z]{3,7}$/);
        for (let i = input!.length - 1; i >= 0; i--) expected += input![i];
      } else {
        expect(input).toMatch(/^[0-9]{4,9}$/);
        const counts = Array.from({ length: 10 }, (_, d) => [...input!].filter((c) => Number(c) === d).length);
        counts.forEach((n, d) => (expected += String(d).repeat(n)));
      }
      expect(e.answer).toBe(expected);
    }
    // Every length occurs: short instances (learnt first) and long ones.
    expect(new Set(train.filter((e) => e.task === "reverse").map((e) => e.answer.length))).toEqual(new Set([3, 4, 5, 6, 7]));
    expect(new Set(train.filter((e) => e.task === "sort").map((e) => e.answer.length))).toEqual(new Set([4, 5, 6, 7, 8, 9]));
    // The same seed gives the same data.
    expect(demoSplits(400, 60)).toEqual({ train, test: heldOut });
  });

  test("readExamples reads make-demo's rows back, and names the file and line of a bad one", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "spin-demo-task-"));
    const file = path.join(dir, "rows.jsonl");
    writeFileSync(file, heldOut.map((e) => JSON.stringify(sftRow(e))).join("\n") + "\n");
    expect(readExamples(file)).toEqual(heldOut);
    writeFileSync(file, JSON.stringify(sftRow(heldOut[0]!)) + "\n\n" + JSON.stringify({ messages: [{ role: "user", content: "multiply 3 4" }, { role: "assistant", content: "12" }] }) + "\n");
    expect(() => readExamples(file)).toThrow(SpinNativeError);
    expect(() => readExamples(file)).toThrow(/"multiply 3 4" is not a prompt of the demo's tasks/);
    writeFileSync(file, JSON.stringify({ messages: [{ role: "user", content: "sort 4312" }] }) + "\n");
    expect(() => readExamples(file)).toThrow(`${file}:1: a demo row needs a user and an assistant message`);
    expect(taskOf("sort 123")).toBe("sort");
  });
});

describe("identicalPairShare", () => {
  const pair = (prompt: string, real: string, generated: string): SpinRow => ({
    real: [{ role: "user", content: prompt }, { role: "assistant", content: real }],
    generated: [{ role: "user", content: prompt }, { role: "assistant", content: generated }],
  });

  test("counts pairs whose whole conversations are equal", () => {
    const rows = [pair("a", "x", "x"), pair("b", "y", "z"), pair("c", "w", "w "), pair("d", "v", "v")];
    expect(identicalPairShare(rows)).toBe(2 / 4);
    expect(identicalPairShare([])).toBe(0);
    // A multi-turn prompt: only equal when every turn is.
    const multi: SpinRow = {
      real: [{ role: "system", content: "s" }, { role: "user", content: "q" }, { role: "assistant", content: "r" }],
      generated: [{ role: "system", content: "s" }, { role: "user", content: "q" }, { role: "assistant", content: "r" }],
    };
    expect(identicalPairShare([multi, pair("e", "1", "2"), pair("f", "1", "2")])).toBeCloseTo(1 / 3, 15);
  });
});

describe("the report's held-out comparison", () => {
  test("one plot per held-out metric, with a series per compared model and a point where it has a value", () => {
    const state = {
      version: 1 as const,
      baseModel: "/m",
      iterations: 2,
      baseEval: { accuracy: 0.4, meanLogprob: -4 },
      iteration: [
        { generate: { rows: 10, eosRate: 1, meanGeneratedTokens: 4, seconds: 1, identicalPairs: 0.3 }, eval: { accuracy: 0.45, meanLogprob: -3.9 } },
        { generate: { rows: 10, eosRate: 1, meanGeneratedTokens: 4, seconds: 1, identicalPairs: 0.5 }, eval: { accuracy: 0.5, meanLogprob: -3.8 } },
      ],
    };
    const html = renderReport(state, [[], []], { comparison: [{ name: "baseline B", evals: [undefined, undefined, { accuracy: 0.6, meanLogprob: -3 }] }] });
    for (const key of ["accuracy", "meanLogprob"]) {
      const figure = new RegExp(`<figure data-heldout="${key}">([\\s\\S]*?)</figure>`).exec(html)?.[1];
      expect(figure, key).toBeDefined();
      expect(figure).toContain("this run");
      expect(figure).toContain("baseline B");
      expect(figure!.match(/<polyline/g)).toHaveLength(2); // the run's three points, the baseline's one
      expect(figure!.match(/<circle/g)).toHaveLength(1); // a lone point is marked
    }
    expect(html).toContain("<td>30.0%</td>");
    expect(html).toContain("<td>50.0%</td>");
  });
});
