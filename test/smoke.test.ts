import { expect, test } from "vitest";

import { tensor } from "../lib/index.js";

test("matmul of a 2x2 by identity", () => {
  const a = tensor([[1, 2], [3, 4]]);
  const eye = tensor([[1, 0], [0, 1]]);
  expect(a.matmul(eye).toList()).toEqual([[1, 2], [3, 4]]);
});
