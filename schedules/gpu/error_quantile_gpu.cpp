// CUDA schedule of the error quantile: one thread block per sample. Each radix pass counts into a
// shared-memory histogram with atomic adds from all threads; the block tests and the group totals
// are spread over the threads, the short scans and the bucket choice are done by one thread.
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
        const std::string p = std::to_string(pass);
        Func histogram = s.histograms[pass];
        histogram.compute_at(out, s.b).bound(s.d, 0, s.bins[pass]).store_in(MemoryType::GPUShared);
        histogram.split(s.d, s.d, dt, threads, TailStrategy::GuardWithIf).gpu_threads(dt);
        if (pass >= s.histograms.size() - s.block_hits.size()) {
            Func hit = s.block_hits[pass - (s.histograms.size() - s.block_hits.size())];
            Var ht("ht" + p);
            hit.compute_at(out, s.b).split(s.d, s.d, ht, threads, TailStrategy::GuardWithIf).gpu_threads(ht);
            hit.update().split(s.d, s.d, ht, threads, TailStrategy::GuardWithIf).gpu_threads(ht);
        }
        RVar ro("ro" + p), ri("ri" + p);
        const std::vector<RVar> counted = histogram.rvars(0);
        // The first pass counts over one RDom dimension; the filtered passes over lanes x blocks.
        RVar inner = counted.size() == 1 ? counted[0] : counted[1];
        histogram.update().atomic().split(inner, ro, ri, threads, TailStrategy::GuardWithIf).gpu_threads(ri);
        Func total = s.group_totals[pass];
        Var gt("gt" + p);
        total.compute_at(out, s.b).store_in(MemoryType::GPUShared).split(s.d, s.d, gt, threads, TailStrategy::GuardWithIf)
            .gpu_threads(gt);
        total.update().split(s.d, s.d, gt, threads, TailStrategy::GuardWithIf).gpu_threads(gt);
        // Code at the block level outside thread loops runs on one thread of the block.
        s.group_running[pass].compute_at(out, s.b).store_in(MemoryType::GPUShared);
        s.groups[pass].compute_at(out, s.b);
        s.in_group_running[pass].compute_at(out, s.b);
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
