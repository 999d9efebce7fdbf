// CUDA schedule of the forward: one thread per (pixel, output channel, batch tile); the thread
// keeps batch_vector accumulators in registers across the receptive field. A straightforward
// schedule that proves the generator runs on the GPU; tuned GPU schedules build on it.
#include "forward_schedule.h"

namespace smoe {

using namespace Halide;

void schedule_forward_gpu(ForwardStages &s, const TileKnobs &knobs, const Target &) {
    const int batch_tile = knobs.accumulators > 0 ? knobs.accumulators : 4;
    const int threads_w = 32, threads_h = knobs.row_tile > 0 ? knobs.row_tile : 4;
    Var wo("wo"), wi("wi"), ho("ho"), hi("hi"), bo("bo"), bi("bi"), jfb("jfb");
    Func y = s.output;
    y.split(s.b, bo, bi, batch_tile, TailStrategy::GuardWithIf)
        .split(s.w, wo, wi, threads_w, TailStrategy::GuardWithIf)
        .split(s.h, ho, hi, threads_h, TailStrategy::GuardWithIf)
        .fuse(s.jf, bo, jfb)
        .reorder(bi, wi, hi, wo, ho, jfb)
        .gpu_threads(wi, hi)
        .gpu_blocks(wo, ho, jfb)
        .unroll(bi);
    s.response.compute_at(y, wi).unroll(s.b, batch_tile, TailStrategy::GuardWithIf);
    s.response.update()
        .reorder(s.b, s.r.x, s.r.y, s.r.z, s.jf, s.w, s.h)
        .unroll(s.b, batch_tile, TailStrategy::GuardWithIf);
}

}  // namespace smoe
