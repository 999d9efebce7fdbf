// CUDA schedule of the error quantile: one thread block per sample. Each radix pass counts into a
// shared-memory histogram with atomic adds from all threads; the scan over the bins and the
// bucket choice are done by one thread (a few thousand adds, cheap next to the counting).
#include "error_quantile_schedule.h"

namespace smoe {

using namespace Halide;

void schedule_error_quantile_gpu(ErrorQuantileStages &s, const Knobs &, const Target &) {
    constexpr int threads = 256;
    Func out = s.output;
    Var bi("bi");
    out.gpu_tile(s.b, bi, 1);
    Var dt("dt");
    for (size_t pass = 0; pass < s.histograms.size(); ++pass) {
        Func histogram = s.histograms[pass];
        histogram.compute_at(out, s.b).bound(s.d, 0, s.bins[pass]).store_in(MemoryType::GPUShared);
        histogram.split(s.d, s.d, dt, threads, TailStrategy::GuardWithIf).gpu_threads(dt);
        RVar ro("ro" + std::to_string(pass)), ri("ri" + std::to_string(pass));
        histogram.update().atomic().split(histogram.rvars(0)[0], ro, ri, threads, TailStrategy::GuardWithIf)
            .reorder(ri, ro, s.b).gpu_threads(ri);
        // Code at the block level outside thread loops runs on one thread of the block.
        s.cumulative[pass].compute_at(out, s.b).store_in(MemoryType::GPUShared);
        s.buckets[pass].compute_at(out, s.b);
    }
    // The last pass: atomic add / min from all threads of the block.
    for (size_t i = 0; i < s.final_pass.size(); ++i) {
        Func f = s.final_pass[i];
        RVar ro("fo" + std::to_string(i)), ri("fi" + std::to_string(i));
        f.compute_at(out, s.b).store_in(MemoryType::GPUShared);
        f.update().atomic().split(f.rvars(0)[0], ro, ri, threads, TailStrategy::GuardWithIf).gpu_threads(ri);
    }
}

}  // namespace smoe
