// One thread per (pixel, channel, batch tile); the thread keeps the batch tile's accumulators in
// registers across the whole reduction. A straightforward schedule that proves the generators
// run on the GPU; tuned GPU schedules build on it.
#include "pixel_tiles_gpu.h"

namespace smoe {

using namespace Halide;

void schedule_pixel_tiles_gpu(PixelTileStagesGpu &s, const Knobs &knobs) {
    const int batch_tile = knobs["accumulators"];
    const int threads_w = 32, threads_h = knobs["row_tile"];
    Var wo("wo"), wi("wi"), ho("ho"), hi("hi"), bo("bo"), bi("bi"), cb("cb");
    Func out = s.output;
    out.split(s.b, bo, bi, batch_tile, TailStrategy::GuardWithIf)
        .split(s.w, wo, wi, threads_w, TailStrategy::GuardWithIf)
        .split(s.h, ho, hi, threads_h, TailStrategy::GuardWithIf)
        .fuse(s.channel, bo, cb)
        .reorder(bi, wi, hi, wo, ho, cb)
        .gpu_threads(wi, hi)
        .gpu_blocks(wo, ho, cb)
        .unroll(bi);
    s.accumulator.compute_at(out, wi).unroll(s.b, batch_tile, TailStrategy::GuardWithIf);
    std::vector<VarOrRVar> order = {s.b};
    order.insert(order.end(), s.reduction.begin(), s.reduction.end());
    for (const Var &v : {s.channel, s.w, s.h}) order.push_back(v);
    s.accumulator.update().reorder(order).unroll(s.b, batch_tile, TailStrategy::GuardWithIf);
}

}  // namespace smoe
