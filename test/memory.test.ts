// Ownership of native tensors: scope(), keep(), Symbol.dispose, and the FinalizationRegistry
// safety net, checked through the addon's live-handle count and the process RSS.
import { describe, expect, test } from "vitest";

import { SpinNativeError, type Tensor, keep, memoryStats, scope, tensor, zeros } from "../lib/index.js";
import { expectCode } from "./helpers.js";

const live = () => memoryStats().liveTensors;

function gc(): void {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (!collect) throw new Error("run vitest with --expose-gc (vitest.config.ts execArgv)");
  collect();
}
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Collects garbage and lets FinalizationRegistry callbacks (which run as tasks) happen. */
async function settle(rounds = 4): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    gc();
    await tick();
    await tick();
  }
}

describe("scope()", () => {
  test("disposes tensors created inside except the returned one", () => {
    const before = live();
    let made: Tensor[] = [];
    const out = scope(() => {
      const a = zeros([2]);
      const b = a.add(1);
      made = [a, b];
      return b.mul(3);
    });
    expect(made.every((t) => t.disposed)).toBe(true);
    expect(out.disposed).toBe(false);
    expect(out.toList()).toEqual([3, 3]);
    expect(live()).toBe(before + 1);
    out.dispose();
    expect(live()).toBe(before);
  });

  test("keeps tensors returned inside arrays, plain objects and Maps", () => {
    const before = live();
    let dropped: Tensor[] = [];
    const result = scope(() => {
      const a = tensor([1]);
      const b = tensor([2]);
      const c = tensor([3]);
      const d = tensor([4]);
      dropped = [tensor([5]), a.add(b)];
      return { pair: [a, { inner: b }], list: [[c]], map: new Map([["d", d]]), label: "x" };
    });
    expect(dropped.every((t) => t.disposed)).toBe(true);
    const kept = [result.pair[0] as Tensor, (result.pair[1] as { inner: Tensor }).inner, result.list[0]![0]!, result.map.get("d")!];
    expect(kept.map((t) => t.disposed)).toEqual([false, false, false, false]);
    expect(kept.map((t) => t.item())).toEqual([1, 2, 3, 4]);
    expect(live()).toBe(before + 4);
    kept.forEach((t) => t.dispose());
    expect(live()).toBe(before);
  });

  test("a tensor created outside and returned from a scope is left alone", () => {
    const outside = zeros([2]);
    const same = scope(() => outside);
    expect(same).toBe(outside);
    expect(outside.disposed).toBe(false);
    outside.dispose();
  });

  test("nested scopes: a tensor returned by the inner scope belongs to the outer one", () => {
    const before = live();
    let fromInner: Tensor | undefined;
    let innerTemp: Tensor | undefined;
    scope(() => {
      fromInner = scope(() => {
        innerTemp = zeros([2]);
        return innerTemp.add(5);
      });
      expect(innerTemp!.disposed).toBe(true);
      expect(fromInner.disposed).toBe(false);
      expect(fromInner.toList()).toEqual([5, 5]);
    });
    expect(fromInner!.disposed).toBe(true); // the outer scope did not return it
    expect(live()).toBe(before);

    const survivor = scope(() => scope(() => zeros([1]).add(2)));
    expect(survivor.disposed).toBe(false);
    expect(live()).toBe(before + 1);
    survivor.dispose();
  });

  test("a throwing fn disposes everything and rethrows the same error", () => {
    const before = live();
    const made: Tensor[] = [];
    const boom = new Error("boom");
    expect(() =>
      scope(() => {
        made.push(zeros([3]), zeros([4]).add(1));
        throw boom;
      }),
    ).toThrow(boom);
    expect(made.every((t) => t.disposed)).toBe(true);
    expect(live()).toBe(before);

    // a native error inside a scope passes through unchanged too
    const error = (() => {
      try {
        scope(() => zeros([2]).matmul(zeros([3])));
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(SpinNativeError);
    expect(live()).toBe(before);
  });

  test("an async fn is refused with INVALID_ARGUMENT and what it made so far is disposed", async () => {
    const before = live();
    let made: Tensor | undefined;
    expectCode(
      () =>
        scope(async () => {
          made = zeros([2]);
          await tick();
          return 1;
        }),
      "INVALID_ARGUMENT",
    );
    expect(made!.disposed).toBe(true);
    expect(live()).toBe(before);
    await tick(); // let the async fn finish
  });

  test("keep() lets a tensor outlive every open scope", () => {
    const before = live();
    let kept: Tensor | undefined;
    let other: Tensor | undefined;
    scope(() => {
      scope(() => {
        kept = keep(zeros([2]).add(7));
        other = zeros([1]);
      });
      expect(other!.disposed).toBe(true);
      expect(kept!.disposed).toBe(false);
    });
    expect(kept!.disposed).toBe(false);
    expect(kept!.toList()).toEqual([7, 7]);
    expect(live()).toBe(before + 1);
    kept!.dispose();
    expect(live()).toBe(before);
  });

  test("a tensor disposed early inside a scope is not a problem at scope end", () => {
    const before = live();
    scope(() => {
      const t = zeros([2]);
      t.dispose();
      zeros([3]);
    });
    expect(live()).toBe(before);
  });

  test("grad handles made inside a scope are disposed; the gradient itself stays on the leaf", () => {
    const x = tensor([1, 2], { dtype: "float64" }).requireGrad();
    scope(() => {
      x.mul(x).sum().backward();
      expect(x.grad!.toList()).toEqual([2, 4]);
    });
    const grad = x.grad!;
    expect(grad.toList()).toEqual([2, 4]);
    grad.dispose();
    x.dispose();
  });
});

describe("Symbol.dispose", () => {
  test("t[Symbol.dispose]() disposes the tensor and frees its handle", () => {
    const before = live();
    const t = zeros([4]);
    expect(live()).toBe(before + 1);
    t[Symbol.dispose]();
    expect(t.disposed).toBe(true);
    expect(live()).toBe(before);
    expect(() => t[Symbol.dispose]()).not.toThrow();
  });
});

describe("native memory is returned", () => {
  const MiB = 1024 * 1024;

  test("100 000 dropped tensors are freed by the FinalizationRegistry and GC", async () => {
    await settle();
    const baseline = live();
    const base = zeros([1000]);
    const churn = async (count: number) => {
      for (let i = 0; i < count; i++) {
        // 1000 float32 each, made by a factory or by an op; never disposed explicitly
        if (i % 2 === 0) zeros([1000]);
        else base.add(i);
        if ((i + 1) % 10_000 === 0) {
          gc();
          await tick();
        }
      }
    };
    await churn(10_000); // warm-up: heap and allocator reach their steady size
    await settle();
    const rssWarm = process.memoryUsage().rss;
    await churn(100_000);
    await settle();
    const rssAfter = process.memoryUsage().rss;
    expect((rssAfter - rssWarm) / MiB, `RSS grew by ${((rssAfter - rssWarm) / MiB).toFixed(1)} MiB`).toBeLessThan(64);
    // every dropped handle was collected (base is the one still alive)
    expect(live()).toBeLessThanOrEqual(baseline + 1 + 10);
    base.dispose();
  });

  test("100 000 explicitly disposed tensors leave RSS and the live count where they were", async () => {
    await settle();
    const base = zeros([1000]);
    const baseline = live();
    const churn = (count: number) => {
      for (let i = 0; i < count; i++) {
        const t = i % 2 === 0 ? zeros([1000]) : base.add(i);
        t.dispose();
      }
    };
    churn(10_000);
    await settle();
    const rssWarm = process.memoryUsage().rss;
    churn(100_000);
    expect(live()).toBe(baseline);
    await settle();
    const rssAfter = process.memoryUsage().rss;
    expect((rssAfter - rssWarm) / MiB, `RSS grew by ${((rssAfter - rssWarm) / MiB).toFixed(1)} MiB`).toBeLessThan(64);
    expect(memoryStats().reportedBytes).toBeGreaterThanOrEqual(4000); // base is still reported
    base.dispose();
  });

  test("reportedBytes follows the live tensors' storage", () => {
    const before = memoryStats().reportedBytes;
    const t = zeros([256], { dtype: "float64" });
    expect(memoryStats().reportedBytes - before).toBe(256 * 8);
    t.dispose();
    expect(memoryStats().reportedBytes).toBe(before);
  });
});
