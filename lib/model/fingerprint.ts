// A cheap fingerprint of a model's weights, to tell the checkpoints of successive iterations
// apart (self-play output records the model that wrote it).
import { createHash } from "node:crypto";

import { scope } from "../core/memory.js";
import type { CausalLM } from "./causal-lm.js";

/** SHA-256 of parts joined by NUL (so no two lists of parts collide). */
export function hashParts(parts: Iterable<string>): string {
  const hash = createHash("sha256");
  for (const part of parts) hash.update(part).update("\u0000");
  return hash.digest("hex");
}

/**
 * A fingerprint of the weights: config, dtype and 64 evenly spaced values of every parameter.
 * Cheap, device independent, and different for the checkpoints of successive iterations.
 */
export function modelFingerprint(model: CausalLM): string {
  const parts: string[] = [JSON.stringify(model.config), JSON.stringify(model.generationConfig), model.dtype];
  scope(() => {
    const parameters = model.parameters();
    for (const name of [...parameters.keys()].sort()) {
      const t = parameters.get(name)!;
      const numel = t.numel;
      const flat = t.reshape([-1]);
      const step = Math.max(1, Math.floor(numel / 64));
      const sample = flat.slice(0, 0, null, step).slice(0, 0, 64).to({ device: "cpu", dtype: "float32" });
      parts.push(`${name}:${t.shape.join("x")}:${Array.from(sample.toTypedArray() as Float32Array).join(",")}`);
    }
  });
  return hashParts(parts);
}
