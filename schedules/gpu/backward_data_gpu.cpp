// CUDA schedule of the input gradient: one thread per (pixel, input channel, batch tile), with
// the batch tile's accumulators in registers; the straightforward counterpart of forward_gpu.cpp.
#include "backward_data_schedule.h"

namespace smoe {

using namespace Halide;

void schedule_backward_data_gpu(BackwardDataStages &s, const TileKnobs &knobs, const Target &) {
    const int batch_tile = knobs.accumulators > 0 ? knobs.accumulators : 4;
    const int threads_w = 32, threads_h = knobs.row_tile > 0 ? knobs.row_tile : 4;
    Var wo("wo"), wi("wi"), ho("ho"), hi("hi"), bo("bo"), bi("bi"), cb("cb");
    Func out = s.output;
    out.split(s.b, bo, bi, batch_tile, TailStrategy::GuardWithIf)
        .split(s.w, wo, wi, threads_w, TailStrategy::GuardWithIf)
        .split(s.h, ho, hi, threads_h, TailStrategy::GuardWithIf)
        .fuse(s.c, bo, cb)
        .reorder(bi, wi, hi, wo, ho, cb)
        .gpu_threads(wi, hi)
        .gpu_blocks(wo, ho, cb)
        .unroll(bi);
    s.gradient.compute_at(out, wi).unroll(s.b, batch_tile, TailStrategy::GuardWithIf);
    s.gradient.update()
        .reorder(s.b, s.r.z, s.r.x, s.r.y, s.c, s.w, s.h)
        .unroll(s.b, batch_tile, TailStrategy::GuardWithIf);
}

}  // namespace smoe
