// Ownership of native tensors from JavaScript: explicit dispose(), scope() for everything
// created inside a block, and a FinalizationRegistry as the safety net for handles that
// were simply dropped (it frees their native memory when the wrapper is collected).
import type { NativeTensor } from "./native-types.js";
import { SpinNativeError } from "./errors.js";

const finalizer = new FinalizationRegistry<NativeTensor>((handle) => handle.dispose());
const openScopes: Set<object>[] = [];

/** Registers a new wrapper: collected wrappers free their handle; open scopes track it. */
export function adopt(owner: object, handle: NativeTensor): void {
  finalizer.register(owner, handle, owner);
  openScopes.at(-1)?.add(owner);
}

/** Called when a wrapper is disposed explicitly. */
export function release(owner: object): void {
  finalizer.unregister(owner);
  for (const tracked of openScopes) tracked.delete(owner);
}

function collectReturned(value: unknown, tracked: Set<object>, kept: Set<object>, seen: Set<object>): void {
  if (value === null || typeof value !== "object" || seen.has(value)) return;
  seen.add(value);
  if (tracked.has(value)) {
    kept.add(value);
    return;
  }
  const items = Array.isArray(value) ? value : value instanceof Map ? [...value.values()] : Object.values(value);
  for (const item of items) collectReturned(item, tracked, kept, seen);
}

/**
 * Runs `fn` and disposes every tensor created inside it, except the tensors it returns
 * (directly, or inside arrays, Maps and plain objects). Tensors kept this way belong to the
 * enclosing scope, if any. `fn` must be synchronous.
 *
 * @example
 * const loss = scope(() => logits.logSoftmax(-1).gather(-1, labels).neg().mean());
 */
export function scope<T>(fn: () => T): T {
  const tracked = new Set<object>();
  openScopes.push(tracked);
  let result: T;
  try {
    result = fn();
  } catch (error) {
    openScopes.pop();
    disposeAll(tracked, new Set());
    throw error;
  }
  openScopes.pop();
  if (result instanceof Promise) {
    disposeAll(tracked, new Set());
    throw new SpinNativeError("scope: the function returned a Promise; scope() takes synchronous code", "INVALID_ARGUMENT", "scope");
  }
  const kept = new Set<object>();
  collectReturned(result, tracked, kept, new Set());
  disposeAll(tracked, kept);
  for (const owner of kept) openScopes.at(-1)?.add(owner);
  return result;
}

/** Removes a tensor from the open scopes so it outlives them; the caller disposes it. */
export function keep<T extends object>(owner: T): T {
  for (const tracked of openScopes) tracked.delete(owner);
  return owner;
}

function disposeAll(tracked: Set<object>, kept: Set<object>): void {
  for (const owner of tracked) {
    if (!kept.has(owner)) (owner as Disposable)[Symbol.dispose]();
  }
}
