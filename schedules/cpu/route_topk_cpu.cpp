// CPU schedule of top-E routing, one grid row per task.
//
// Default: the ranks of a row are computed vectorised across pixels (each lane is one pixel
// comparing against every expert), then scattered to slots pixel by pixel.
//
// `pixel_tile` = 1: one vector of pixels at a time. Its keys (all experts) stay in L1, each
// expert's rank is computed just before it is scattered, and the scatter itself is vectorised
// across the pixels (lanes write distinct pixels). With many experts a whole row's keys and ranks
// (NE × W each) no longer fit in L1.
#include "route_topk_schedule.h"

namespace smoe {

using namespace Halide;

void schedule_route_topk_cpu(RouteTopKStages &s, const Knobs &knobs, const Target &target) {
    const int lanes = knobs["pixel_vector"] > 0 ? knobs["pixel_vector"] : target.natural_vector_size(Int(32));
    const TailStrategy tail = TailStrategy::GuardWithIf;
    Var row("row"), wo("wo"), wi("wi");
    s.slot_expert.compute_root().fuse(s.h, s.b, row).parallel(row).vectorize(s.w, lanes, tail);
    if (knobs["pixel_tile"] == 1) {
        s.slot_expert.update()
            .fuse(s.h, s.b, row)
            .parallel(row)
            .split(s.w, wo, wi, lanes, tail)
            .reorder(wi, s.scatter, wo)
            .vectorize(wi);
        // On the stack: a heap block per vector of pixels would cost more than its ranks.
        s.rank.compute_at(s.slot_expert, s.scatter).store_in(MemoryType::Stack).vectorize(s.w, lanes, tail);
        s.rank.update().reorder(s.w, s.o, s.e).vectorize(s.w, lanes, tail);
        s.key.compute_at(s.slot_expert, wo).store_in(MemoryType::Stack).vectorize(s.w, lanes, tail);
    } else {
        s.slot_expert.update().fuse(s.h, s.b, row).parallel(row).reorder(s.scatter, s.w);
        s.rank.compute_at(s.slot_expert, row).vectorize(s.w, lanes, tail);
        s.rank.update().reorder(s.w, s.o, s.e).vectorize(s.w, lanes, tail);
        s.key.compute_at(s.slot_expert, row).vectorize(s.w, lanes, tail);
    }

    for (Func out : {s.indices, s.values}) {
        out.fuse(s.h, s.b, row).parallel(row).vectorize(s.w, lanes, tail);
    }
}

}  // namespace smoe
