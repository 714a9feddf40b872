// This process's c10d process group, like torch.distributed's default group: a TCPStore
// rendezvous from torchrun-style settings, Gloo for CPU tensors and, in builds against a CUDA
// libtorch with NCCL (SPIN_WITH_NCCL, set by CMakeLists.txt), NCCL for CUDA tensors.
//
// c10d moved between libtorch 1.13 and 2.x (ProcessGroupGloo/NCCL became c10d::Backends
// under a ProcessGroup); only the concrete backend classes and c10d::Work are used here,
// whose collective signatures are the same in both.
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#if __has_include(<gloo/algorithm.h>)
#define USE_C10D_GLOO 1
#define SPIN_HAS_GLOO 1
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef SPIN_WITH_NCCL
#define USE_C10D_NCCL 1
#define SPIN_HAS_NCCL 1
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#if defined(SPIN_HAS_GLOO) || defined(SPIN_HAS_NCCL)
#define SPIN_HAS_C10D 1
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#endif

namespace spin {

struct GroupOptions {
  int rank = 0;
  int world = 1;
  std::string address;
  int port = 29500;
  int local_rank = 0;        // this rank's CUDA device
  bool single_node = false;  // every rank on this machine: Gloo binds to the master's address
  std::string job_id;        // the same on every rank of the job (torchrun's rdzv_id)
  std::chrono::milliseconds timeout{1800000};  // torch.distributed's default
};

enum class Reduction { kSum, kAverage, kMax };

// Throws unless this build has a c10d backend, naming what was missing at build time.
#ifdef SPIN_HAS_C10D
inline void RequireBackend() {}
#else
[[noreturn]] void RequireBackend();
#endif

#ifdef SPIN_HAS_C10D
class ProcessGroup {
 public:
  // Environment the backends read; call on the JS thread before Join.
  static void PrepareEnvironment();
  // Rendezvous (blocking, up to the timeout) and becomes the process's group. The store at
  // address:port belongs to the job of its rank 0: a rank of another job is refused before it
  // writes anything there, and a rank 0 whose port is taken fails alone.
  static void Join(const GroupOptions& options);
  static void Leave();
  // The joined group; throws when there is none.
  static std::shared_ptr<ProcessGroup> Current();

  int rank() const { return options_.rank; }
  int world() const { return options_.world; }

  // Starts an in-place sum of a contiguous tensor on the backend of its device (the gradient
  // reducer's, which overlaps it with backward).
  c10::intrusive_ptr<c10d::Work> StartSum(at::Tensor& tensor);
  // Waits for a collective; a dead or hung peer surfaces here as an error within the timeout.
  void Wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) const;

  void AllReduce(at::Tensor& tensor, Reduction op);
  void Broadcast(at::Tensor& tensor, int64_t root);
  // [world, ...tensor's shape]: row r is rank r's tensor.
  at::Tensor AllGather(const at::Tensor& tensor);
  // Starts gathering every rank's `input` (contiguous) into `output` (world × its numel, flat):
  // rank r's at [r·n, (r+1)·n).
  c10::intrusive_ptr<c10d::Work> StartAllGather(at::Tensor& input, at::Tensor& output);
  // Whether StartReduceScatter serves this tensor: NCCL (CUDA tensors) has the collective,
  // Gloo has not (the sharded reducer then all-reduces and keeps its slice).
  bool HasReduceScatter(const at::Tensor& tensor) const;
  // Starts the sum of every rank's `input` (world × output's numel, contiguous), scattered:
  // this rank receives its chunk in `output`.
  c10::intrusive_ptr<c10d::Work> StartReduceScatter(at::Tensor& input, at::Tensor& output);

 private:
  explicit ProcessGroup(const GroupOptions& options);
  // Runs `collective` on the backend for `tensor`; with no backend for its device (a CPU
  // tensor in an NCCL-only build) it goes through this rank's CUDA device and back.
  template <typename Collective>
  void OnBackendFor(at::Tensor& tensor, const Collective& collective);

  GroupOptions options_;
  c10::intrusive_ptr<c10d::Store> store_;
#ifdef SPIN_HAS_GLOO
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo_;
#endif
#ifdef SPIN_HAS_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl_;
#endif
};
#endif

}  // namespace spin
