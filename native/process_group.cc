#include "process_group.h"

#include <ATen/ATen.h>
#include <torch/version.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <mutex>

#include "errors.h"

#ifdef SPIN_HAS_NCCL
#include <c10/cuda/CUDAFunctions.h>
#endif
#ifdef SPIN_HAS_C10D
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace spin {

#ifndef SPIN_HAS_C10D
void RequireBackend() {
  throw SpinError(ErrorCode::kInvalidArgument,
                  "this build of spin-native has no c10d backend (libgloo-dev was missing at build time, and the libtorch "
                  "it was built against has no NCCL)");
}
#endif

#ifdef SPIN_HAS_C10D

namespace {
std::mutex g_mutex;
std::shared_ptr<ProcessGroup> g_current;

std::vector<uint8_t> Bytes(const std::string& text) { return {text.begin(), text.end()}; }

// Whether a socket on this machine holds `port`: a bind as the store's server makes it (any
// address, SO_REUSEADDR), on IPv6 (dual-stack) and IPv4.
bool PortInUse(int port) {
  for (const int family : {AF_INET6, AF_INET}) {
    const int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    const int on = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    int bound;
    if (family == AF_INET6) {
      sockaddr_in6 address{};
      address.sin6_family = AF_INET6;
      address.sin6_port = htons(static_cast<uint16_t>(port));
      address.sin6_addr = in6addr_any;
      bound = ::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
    } else {
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_port = htons(static_cast<uint16_t>(port));
      address.sin_addr.s_addr = htonl(INADDR_ANY);
      bound = ::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
    }
    const bool in_use = bound != 0 && errno == EADDRINUSE;
    ::close(fd);
    if (in_use) return true;
  }
  return false;
}

const char kJobKey[] = "spin/job";

// The rendezvous store, seen through this job's prefix. Rank 0 hosts it and publishes the job
// id first; every other rank compares that id with its own before writing any key, so a rank
// of a second job started on the same port leaves the first job untouched.
c10::intrusive_ptr<c10d::Store> JoinJob(const GroupOptions& options) {
  const std::string port = std::to_string(options.port);
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<uint16_t>(options.port);
  store_options.isServer = options.rank == 0;
  // No numWorkers: c10d would count every client that connects, another job's ranks included;
  // the ranks of this job are counted under its prefix below.
  store_options.waitWorkers = false;
  store_options.timeout = options.timeout;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 2)
  // libtorch 2.4 made a libuv server the default; the classic one keeps the store independent
  // of which libuv the process (Node's own) resolved first.
  store_options.useLibUV = false;
#endif
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(options.address, store_options);
  } catch (const std::exception&) {
    // The server could not listen: the job that holds the port must not notice this one.
    if (options.rank == 0 && PortInUse(options.port)) {
      throw SpinError(ErrorCode::kIO, "port " + port + " is in use (another job?): choose another --master-port");
    }
    throw;
  }
  if (options.rank == 0) {
    store->set(kJobKey, Bytes(options.job_id));
  } else {
    const std::vector<uint8_t> value = store->get(kJobKey);  // waits for rank 0, up to the timeout
    const std::string owner(value.begin(), value.end());
    if (owner != options.job_id) {
      throw SpinError(ErrorCode::kIO, options.address + ":" + port + " belongs to another job (id " + owner +
                                          "); this rank's job is " + options.job_id + ": use another --master-port");
    }
  }
  auto job = c10::make_intrusive<c10d::PrefixStore>("spin/" + options.job_id, store);
  // Rank 0 waits for every rank before going on, as c10d's own count of workers made it do.
  if (options.rank != 0) {
    job->set("joined/" + std::to_string(options.rank), Bytes("1"));
  } else if (options.world > 1) {
    std::vector<std::string> ranks;
    for (int r = 1; r < options.world; ++r) ranks.push_back("joined/" + std::to_string(r));
    try {
      job->wait(ranks, options.timeout);
    } catch (const std::exception&) {
      std::string missing;
      for (int r = 1; r < options.world; ++r) {
        if (!job->check({ranks[r - 1]})) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
      }
      if (missing.empty()) throw;
      throw std::runtime_error("rank(s) " + missing + " of job " + options.job_id + " did not join within " +
                               std::to_string(options.timeout.count()) + " ms");
    }
  }
  return job;
}
}  // namespace

ProcessGroup::ProcessGroup(const GroupOptions& options) : options_(options), store_(JoinJob(options)) {
  // Each backend keeps its keys under its own prefix, as torch.distributed does.
#ifdef SPIN_HAS_GLOO
  // As torch.distributed: GLOO_SOCKET_IFNAME names the interface; else one machine talks over
  // the master's address (loopback), and several over the interface this host's name resolves to.
  auto gloo_options = c10d::ProcessGroupGloo::Options::create(options.timeout);
  const char* interface = std::getenv("GLOO_SOCKET_IFNAME");
  gloo_options->devices.push_back(interface && *interface ? c10d::ProcessGroupGloo::createDeviceForInterface(interface)
                                  : options.single_node ? c10d::ProcessGroupGloo::createDeviceForHostname(options.address)
                                                        : c10d::ProcessGroupGloo::createDefaultDevice());
  gloo_ = c10::make_intrusive<c10d::ProcessGroupGloo>(c10::make_intrusive<c10d::PrefixStore>("gloo/", store_), options.rank,
                                                      options.world, gloo_options);
#endif
#ifdef SPIN_HAS_NCCL
  // NCCL_BLOCKING_WAIT is set by Join (see there).
  // A CUDA libtorch on a machine without a GPU still trains on CPU, over Gloo.
  if (c10::cuda::device_count() > 0) {
    auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
    nccl_options->timeout = options.timeout;
    nccl_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(c10::make_intrusive<c10d::PrefixStore>("nccl/", store_), options.rank,
                                                        options.world, nccl_options);
  }
#endif
}

void ProcessGroup::PrepareEnvironment() {
#ifdef SPIN_HAS_NCCL
  // Without blocking wait, NCCL's Work::wait only orders CUDA streams and ignores the timeout;
  // a dead peer must fail the wait instead (both spellings: 1.13 and 2.x). Set on the JS
  // thread: setenv races with getenv on other threads.
  setenv("NCCL_BLOCKING_WAIT", "1", 0);
  setenv("TORCH_NCCL_BLOCKING_WAIT", "1", 0);
#endif
}

void ProcessGroup::Join(const GroupOptions& options) {
  std::shared_ptr<ProcessGroup> group;
  try {
    group.reset(new ProcessGroup(options));
  } catch (const SpinError&) {
    throw;  // already says what to do
  } catch (const std::exception& e) {
    throw SpinError(ErrorCode::kIO, "rendezvous at " + options.address + ":" + std::to_string(options.port) + " failed for rank " +
                                        std::to_string(options.rank) + ": " + e.what());
  }
  std::lock_guard<std::mutex> lock(g_mutex);
  g_current = std::move(group);
}

void ProcessGroup::Leave() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_current.reset();
}

std::shared_ptr<ProcessGroup> ProcessGroup::Current() {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_current) throw SpinError(ErrorCode::kInvalidArgument, "no process group: call Distributed.init() first");
  return g_current;
}

void ProcessGroup::Wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) const {
  try {
    work->wait(options_.timeout);
  } catch (const std::exception& e) {
    throw SpinError(ErrorCode::kIO, std::string(what) + " failed on rank " + std::to_string(rank()) + " of " +
                                        std::to_string(world()) + " (a peer died, hung past the " +
                                        std::to_string(options_.timeout.count()) + " ms timeout, or disconnected): " + e.what());
  }
}

template <typename Collective>
void ProcessGroup::OnBackendFor(at::Tensor& tensor, const Collective& collective) {
#ifdef SPIN_HAS_NCCL
  if (tensor.is_cuda()) return collective(*nccl_, tensor);  // a CUDA tensor means a GPU, so an NCCL group
#endif
#ifdef SPIN_HAS_GLOO
  collective(*gloo_, tensor);
#else
  // An NCCL-only build (a pip torch without Gloo headers): CPU tensors, such as the metrics,
  // travel through this rank's GPU.
  if (!nccl_) throw SpinError(ErrorCode::kInvalidArgument, "this build's only c10d backend is NCCL, and no GPU is visible");
  at::Tensor staged = tensor.to(at::Device(at::kCUDA, options_.local_rank));
  collective(*nccl_, staged);
  tensor.copy_(staged);
#endif
}

c10::intrusive_ptr<c10d::Work> ProcessGroup::StartSum(at::Tensor& tensor) {
  c10d::AllreduceOptions options;
  options.reduceOp = c10d::ReduceOp::SUM;
  options.timeout = options_.timeout;
  std::vector<at::Tensor> tensors{tensor};
#ifdef SPIN_HAS_NCCL
  if (tensor.is_cuda()) return nccl_->allreduce(tensors, options);
#endif
#ifdef SPIN_HAS_GLOO
  return gloo_->allreduce(tensors, options);
#else
  throw SpinError(ErrorCode::kInvalidArgument, "this build has NCCL only: gradients must be CUDA tensors");
#endif
}

void ProcessGroup::AllReduce(at::Tensor& tensor, Reduction op) {
  OnBackendFor(tensor, [&](auto& backend, at::Tensor& target) {
    c10d::AllreduceOptions options;
    // Gloo has no average: sum, then divide.
    options.reduceOp = op == Reduction::kMax ? c10d::ReduceOp::MAX : c10d::ReduceOp::SUM;
    options.timeout = options_.timeout;
    std::vector<at::Tensor> tensors{target};
    Wait(backend.allreduce(tensors, options), "allReduce");
  });
  if (op == Reduction::kAverage) tensor.div_(world());
}

void ProcessGroup::Broadcast(at::Tensor& tensor, int64_t root) {
  OnBackendFor(tensor, [&](auto& backend, at::Tensor& target) {
    c10d::BroadcastOptions options;
    options.rootRank = root;
    options.timeout = options_.timeout;
    std::vector<at::Tensor> tensors{target};
    Wait(backend.broadcast(tensors, options), "broadcast");
  });
}

at::Tensor ProcessGroup::AllGather(const at::Tensor& tensor) {
  // One tensor [world, ...] whose rows are the ranks' tensors: a single staging copy for
  // the NCCL-only path.
  std::vector<int64_t> shape{world()};
  shape.insert(shape.end(), tensor.sizes().begin(), tensor.sizes().end());
  at::Tensor gathered = at::empty(shape, tensor.options());
  at::Tensor input = tensor.contiguous();
  OnBackendFor(gathered, [&](auto& backend, at::Tensor& target) {
    std::vector<std::vector<at::Tensor>> outputs(1);
    for (int r = 0; r < world(); ++r) outputs[0].push_back(target[r]);
    std::vector<at::Tensor> inputs{input.to(target.device())};
    c10d::AllgatherOptions options;
    options.timeout = options_.timeout;
    Wait(backend.allgather(outputs, inputs, options), "allGather");
  });
  return gathered;
}

c10::intrusive_ptr<c10d::Work> ProcessGroup::StartAllGather(at::Tensor& input, at::Tensor& output) {
  const int64_t numel = input.numel();
  std::vector<std::vector<at::Tensor>> outputs(1);
  for (int r = 0; r < world(); ++r) outputs[0].push_back(output.narrow(0, r * numel, numel));
  std::vector<at::Tensor> inputs{input};
  c10d::AllgatherOptions options;
  options.timeout = options_.timeout;
#ifdef SPIN_HAS_NCCL
  if (input.is_cuda()) return nccl_->allgather(outputs, inputs, options);
#endif
#ifdef SPIN_HAS_GLOO
  return gloo_->allgather(outputs, inputs, options);
#else
  throw SpinError(ErrorCode::kInvalidArgument, "this build has NCCL only: sharded weights must be CUDA tensors");
#endif
}

bool ProcessGroup::HasReduceScatter(const at::Tensor& tensor) const {
#ifdef SPIN_HAS_NCCL
  return tensor.is_cuda() && nccl_;
#else
  (void)tensor;
  return false;
#endif
}

c10::intrusive_ptr<c10d::Work> ProcessGroup::StartReduceScatter(at::Tensor& input, at::Tensor& output) {
#ifdef SPIN_HAS_NCCL
  if (HasReduceScatter(input)) {
    c10d::ReduceScatterOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    options.timeout = options_.timeout;
    return nccl_->_reduce_scatter_base(output, input, options);
  }
#endif
  (void)input;
  (void)output;
  throw SpinError(ErrorCode::kInvalidArgument, "reduce-scatter needs NCCL and CUDA tensors");
}

#endif  // SPIN_HAS_C10D

}  // namespace spin
