// CPU schedule of top-E routing: one grid row per task; the ranks of a row are computed
// vectorised across pixels (each lane is one pixel comparing against every expert), then
// scattered to slots pixel by pixel.
#include "route_topk_schedule.h"

namespace smoe {

using namespace Halide;

void schedule_route_topk_cpu(RouteTopKStages &s, const Knobs &knobs, const Target &target) {
    const int lanes = knobs["pixel_vector"] > 0 ? knobs["pixel_vector"] : target.natural_vector_size(Int(32));
    Var row("row");
    s.slot_expert.compute_root().fuse(s.h, s.b, row).parallel(row).vectorize(s.w, lanes, TailStrategy::GuardWithIf);
    s.slot_expert.update().fuse(s.h, s.b, row).parallel(row).reorder(s.scatter, s.w);
    s.rank.compute_at(s.slot_expert, row).vectorize(s.w, lanes, TailStrategy::GuardWithIf);
    s.rank.update().reorder(s.w, s.o, s.e).vectorize(s.w, lanes, TailStrategy::GuardWithIf);
    s.key.compute_at(s.slot_expert, row).vectorize(s.w, lanes, TailStrategy::GuardWithIf);

    for (Func out : {s.indices, s.values}) {
        out.fuse(s.h, s.b, row).parallel(row).vectorize(s.w, lanes, TailStrategy::GuardWithIf);
    }
}

}  // namespace smoe
