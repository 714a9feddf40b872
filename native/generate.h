// The whole decode loop in native code, on a worker thread, with continuous batching: up to a
// maximum number of rows decode together in the slots of a preallocated KV cache; a finished
// row leaves its slot between steps and a waiting prompt takes it (joiners are prefilled
// together, packed without padding). Each row draws from its own generator, so its tokens do
// not depend on which rows share its steps.
#pragma once

#include <napi.h>

namespace spin {

// generate(model, prompts: number[][], options, onTokens?) -> Promise<{tokens, finish, timing}>
Napi::Value Generate(const Napi::CallbackInfo& info);

}  // namespace spin
