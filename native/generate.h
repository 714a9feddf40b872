// The whole decode loop in native code, on a worker thread: left-padded batched prompts,
// prefill, incremental decoding over a preallocated KV cache, per-row stop conditions;
// finished rows are dropped from the batch so they stop costing compute.
#pragma once

#include <napi.h>

namespace spin {

// generate(model, prompts: number[][], options, onTokens?) -> Promise<{tokens, finish, timing}>
Napi::Value Generate(const Napi::CallbackInfo& info);

}  // namespace spin
