// The demo's task: the data (answers recomputed here independently) and its reader.
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

import { describe, expect, test } from "vitest";

import { DEMO_SFT_ROWS_PER_TASK, DEMO_SHIPPED_TRAIN_ROWS, DEMO_TASKS, demoSplits, readExamples, sftRow, taskOf } from "../lib/run/demo/task.js";
import { demoAssets } from "../lib/run/demo/run.js";
import { SpinNativeError } from "../lib/index.js";

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
        expect(input).toMatch(/^[a-z]{5}$/);
        for (let i = input!.length - 1; i >= 0; i--) expected += input![i];
      } else {
        expect(input).toMatch(/^[0-9]{6}$/);
        const counts = Array.from({ length: 10 }, (_, d) => [...input!].filter((c) => Number(c) === d).length);
        counts.forEach((n, d) => (expected += String(d).repeat(n)));
      }
      expect(e.answer).toBe(expected);
    }
    // The same seed gives the same data.
    expect(demoSplits(400, 60)).toEqual({ train, test: heldOut });
  });

  test("the shipped rows are make-demo's: the first of θ0's SFT rows, and the held-out rows", () => {
    const made = demoSplits(DEMO_SFT_ROWS_PER_TASK, 150);
    const assets = demoAssets();
    expect(readExamples(assets.train)).toEqual(made.train.slice(0, DEMO_SHIPPED_TRAIN_ROWS));
    expect(readExamples(assets.test)).toEqual(made.test);
    for (const task of DEMO_TASKS) expect(readExamples(assets.train).filter((e) => e.task === task).length).toBeGreaterThan(DEMO_SHIPPED_TRAIN_ROWS / 3);
  });

  test("readExamples reads make-demo's rows back, and names the file and line of a bad one", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "spin-demo-task-"));
    const file = path.join(dir, "rows.jsonl");
    writeFileSync(file, heldOut.map((e) => JSON.stringify(sftRow(e))).join("\n") + "\n");
    expect(readExamples(file)).toEqual(heldOut);
    writeFileSync(file, JSON.stringify(sftRow(heldOut[0]!)) + "\n\n" + JSON.stringify({ messages: [{ role: "user", content: "multiply 3 4" }, { role: "assistant", content: "12" }] }) + "\n");
    expect(() => readExamples(file)).toThrow(SpinNativeError);
    expect(() => readExamples(file)).toThrow(`${file}:3: demo: "multiply 3 4" is not a prompt of the demo's tasks`);
    writeFileSync(file, "{not json\n");
    expect(() => readExamples(file)).toThrow(`${file}:1: `);
    writeFileSync(file, JSON.stringify({ messages: [{ role: "user", content: "sort 4312" }] }) + "\n");
    expect(() => readExamples(file)).toThrow(`${file}:1: a demo row needs a user and an assistant message`);
    expect(taskOf("sort 123")).toBe("sort");
  });
});
