// CUDA schedule of top-E routing: ranks with one thread per (pixel, expert), then one thread per
// pixel scatters its experts to their slots.
#include "route_topk_schedule.h"

namespace smoe {

using namespace Halide;

void schedule_route_topk_gpu(RouteTopKStages &s, const Knobs &knobs, const Target &) {
    const int threads = knobs["pixel_vector"];
    Var wo("wo"), wi("wi"), eo("eo"), ei("ei"), row("row");
    s.rank.compute_root()
        .fuse(s.h, s.b, row)
        .gpu_tile(s.w, s.e, wo, eo, wi, ei, threads, 4, TailStrategy::GuardWithIf);
    for (int pass = 0; pass < 2; ++pass) {
        s.rank.update(pass)
            .fuse(s.h, s.b, row)
            .gpu_tile(s.w, s.e, wo, eo, wi, ei, threads, 4, TailStrategy::GuardWithIf);
    }
    // The slots have no initial values (every read slot is scattered to), so only the scatter runs.
    s.slot_expert.compute_root();
    s.slot_expert.update()
        .fuse(s.h, s.b, row)
        .split(s.w, wo, wi, threads, TailStrategy::GuardWithIf)
        .gpu_blocks(wo, row)
        .gpu_threads(wi);
    Func indices = s.indices, values = s.values;
    indices.fuse(s.h, s.b, row).gpu_tile(s.w, s.j, wo, eo, wi, ei, threads, 4, TailStrategy::GuardWithIf);
    values.fuse(s.h, s.b, row).gpu_tile(s.w, s.j, wo, eo, wi, ei, threads, 4, TailStrategy::GuardWithIf);
}

}  // namespace smoe
