// CUDA schedule of the weight gradient: one thread block per band, its threads split the
// (kh, kw, c) entries, so every entry of a band's partial sum is owned by one thread and summed
// in a fixed order (no atomics, deterministic like the CPU). Straightforward, not yet tuned.
#include "backward_weight_schedule.h"

namespace smoe {

using namespace Halide;

void schedule_backward_weight_gpu(BackwardWeightStages &s, const Knobs &, const Target &) {
    Var co("co"), ci("ci"), kk("kk"), rt("rt");
    s.partial.compute_root().gpu_tile(s.c, s.row, co, rt, ci, kk, 32, 4, TailStrategy::GuardWithIf);
    Stage scatter = s.partial.update();
    scatter.split(s.c, co, ci, 32, TailStrategy::GuardWithIf).gpu_blocks(s.band).gpu_threads(ci);
    if (s.shared_routing) {
        scatter.reorder(ci, s.kw, s.kh, s.p.x, s.p.y, s.p.z, co, s.band);
    } else {
        scatter.reorder(ci, s.kw, s.kh, s.p.x, s.p.w, s.p.y, s.p.z, co, s.band);
    }
    s.contribution.compute_at(s.partial, ci);
    s.total.compute_root().gpu_tile(s.c, s.row, co, rt, ci, kk, 32, 4, TailStrategy::GuardWithIf);
    s.total.update().gpu_tile(s.c, s.row, co, rt, ci, kk, 32, 4, TailStrategy::GuardWithIf);
    Func out = s.output;
    out.gpu_tile(s.c, s.row, co, rt, ci, kk, 32, 4, TailStrategy::GuardWithIf);
}

}  // namespace smoe
