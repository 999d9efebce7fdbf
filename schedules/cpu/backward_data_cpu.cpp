// CPU schedules of the input gradient.
//
// Default: pixel-major register tiles (schedules/cpu/pixel_tiles.cpp) over input channels x batch,
// reducing over the output channels of the neighbour pixels innermost, then kw, kh. The rows of the
// neighbours' experts are computed a few grid rows at a time, like the batch-innermost dŷ.
// `channel_vectors` vectorises the input channels instead, for every batch: a gathered expert's
// weights are contiguous along them, so each slot is a few vector loads times a broadcast dŷ,
// with no gathers and no half-empty vectors when the batch is narrower than a vector.
//
// `formulation=1`: channel axpys (schedules/cpu/channel_axpys.cpp), per pixel a register tile of
// channel vectors x samples, written in pixel vectors.
//
// `row_vectors` (shared routing): the output is vectorised along grid rows. The weight every tap
// applies at every pixel (tap_weight) is gathered once per grid row, row-contiguous, and reused by
// every sample, so each tap of the reduction is a vector load of weights times a vector load of dŷ.
// Layers with few channels and slots (heat: one of each) leave the pixel tiles' channel x batch
// registers mostly empty and store them transposed; this keeps every load and store contiguous.
#include "backward_data_schedule.h"
#include "channel_axpys.h"
#include "pixel_tiles.h"
#include "row_vectors.h"

namespace smoe {

using namespace Halide;

namespace {

void schedule_row_vectors(BackwardDataStages &s, const Knobs &knobs, int lanes) {
    const TailStrategy tail = TailStrategy::GuardWithIf;
    const RowVectorLoops loops;
    const Var &ho = loops.ho, &hi = loops.hi;
    schedule_row_vector_sums(s.output, s.gradient, s.w, s.h, loops, {s.c, s.b, hi}, {s.r.z, s.r.x, s.r.y},
                             knobs["row_tile"], lanes);
    // The tap weights of a task's rows, slid down them: each grid row's are gathered once.
    const std::vector<Var> t = s.tap_weight.args();  // (kw, kh, c, w, h, jf)
    s.tap_weight.store_at(s.output, ho).compute_at(s.output, hi).reorder_storage(t[3], t[0], t[1], t[2], t[5], t[4]);
    s.tap_weight.reorder(t[3], t[0], t[1], t[2], t[5], t[4]).vectorize(t[3], lanes, tail);
    // dŷ of the rows one output row reads, per sample, in one buffer per task (allocated per sample
    // and row, the allocator's lock took 11% of a heat call's profile through the library).
    const std::vector<Var> g = s.grad_out.args();  // (w, h, jf, b)
    s.grad_out.compute_at(s.output, s.b).hoist_storage(s.output, ho).vectorize(g[0], lanes, tail);
}

}  // namespace

void schedule_backward_data_cpu(BackwardDataStages &s, const Knobs &knobs, const Target &target) {
    if (knobs["formulation"] == 1) {
        schedule_channel_axpys_cpu(s, knobs, target);
        return;
    }
    if (knobs["row_vectors"] == 1 && s.shared_routing) {
        schedule_row_vectors(s, knobs, target.natural_vector_size(s.gradient.type()));
        return;
    }
    PixelTileStages tiles{s.grad_out, s.bank, s.expert_row, true, true, s.gradient, s.output, s.w, s.h, s.c, s.b,
                          s.r.z, {s.r.x, s.r.y}, s.batch, s.channels, s.width, knobs["channel_vectors"]};
    schedule_pixel_tiles_cpu(tiles, knobs, target);
}

}  // namespace smoe
