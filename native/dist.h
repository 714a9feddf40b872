// Data parallelism on PyTorch's own engine (c10d): a TCPStore rendezvous from torchrun-style
// settings and a Gloo process group for CPU tensors; collectives as Promises with a timeout.
// One process group per process, like torch.distributed's default group.
#pragma once

#include <napi.h>

namespace spin {

// initProcessGroup({rank, worldSize, masterAddr, masterPort, timeoutMs}) -> Promise<void>
Napi::Value InitProcessGroup(const Napi::CallbackInfo& info);
Napi::Value DestroyProcessGroup(const Napi::CallbackInfo& info);
// allReduce(tensor, "sum" | "avg" | "max") -> Promise<void> (in place)
Napi::Value AllReduce(const Napi::CallbackInfo& info);
// broadcast(tensor, root) -> Promise<void> (in place)
Napi::Value Broadcast(const Napi::CallbackInfo& info);
// allGather(tensor) -> Promise<NativeTensor[]> (rank order)
Napi::Value AllGather(const Napi::CallbackInfo& info);
Napi::Value Barrier(const Napi::CallbackInfo& info);
// allReduceGradients(model, bucketBytes) -> Promise<void>: averages every gradient across
// ranks in flat buckets.
Napi::Value AllReduceGradients(const Napi::CallbackInfo& info);
// broadcastParameters(model, root) -> Promise<void>
Napi::Value BroadcastParameters(const Napi::CallbackInfo& info);

}  // namespace spin
