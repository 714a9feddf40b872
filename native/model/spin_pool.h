// A small thread pool for the back-to-back parallel regions of a batch-1 decode step (the
// matrix-vector products of matvec.h: four per layer). libgomp puts its idle workers to sleep
// (OMP_WAIT_POLICY=PASSIVE), and it stops spinning altogether once a second thread (a libuv
// worker running generation) owns a team, so each of those regions paid a worker's wake-up:
// bench-60m's layers streamed their weights at 12 GB/s while its lm_head, one region, reached
// 23 GB/s. This pool's helpers spin for a short while after each job before they sleep, so the
// next product of the same step finds them awake, and they yield the core while spinning, so
// libtorch's own threads are not starved.
#pragma once

#include <cstdint>
#include <functional>

namespace spin {

// Runs body(begin, end) over [0, n) in chunks of at least `grain`, on the calling thread and
// up to threads − 1 helpers. Returns false, having run nothing, when another thread is using
// the pool (the caller then uses at::parallel_for).
bool SpinPoolFor(int64_t n, int64_t grain, int threads, const std::function<void(int64_t, int64_t)>& body);

}  // namespace spin
