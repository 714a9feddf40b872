// The N-API surface of data parallelism (process_group.h, gradient_reducer.h): joining the
// process group, collectives on Tensors as Promises, and the gradient reducer handle.
#pragma once

#include <napi.h>

#include <memory>
#include <string>
#include <vector>

namespace spin {

// The c10d backends this build has: "gloo" (CPU tensors), "nccl" (CUDA tensors).
std::vector<std::string> DistributedBackends();

// initProcessGroup({rank, worldSize, masterAddr, masterPort, localRank, singleNode, timeoutMs, jobId}) -> Promise<void>
Napi::Value InitProcessGroup(const Napi::CallbackInfo& info);
Napi::Value DestroyProcessGroup(const Napi::CallbackInfo& info);
// allReduce(tensor, "sum" | "avg" | "max") -> Promise<void> (in place)
Napi::Value AllReduce(const Napi::CallbackInfo& info);
// broadcast(tensor, root) -> Promise<void> (in place)
Napi::Value Broadcast(const Napi::CallbackInfo& info);
// allGather(tensor) -> Promise<NativeTensor[]> (rank order)
Napi::Value AllGather(const Napi::CallbackInfo& info);
Napi::Value Barrier(const Napi::CallbackInfo& info);
// broadcastParameters(model, root) -> Promise<void>
Napi::Value BroadcastParameters(const Napi::CallbackInfo& info);

class GradientReducer;

class GradientReducerHandle : public Napi::ObjectWrap<GradientReducerHandle> {
 public:
  static Napi::Function Define(Napi::Env env);
  // createGradientReducer(model, bucketBytes)
  static Napi::Value Create(const Napi::CallbackInfo& info);
  explicit GradientReducerHandle(const Napi::CallbackInfo& info);

 private:
  Napi::Value Arm(const Napi::CallbackInfo& info);
  // finish() -> Promise<{buckets, overlapped}>
  Napi::Value Finish(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  std::shared_ptr<GradientReducer> reducer_;
};

}  // namespace spin
