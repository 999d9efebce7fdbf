// CPU schedule of top-E routing, one grid row per task: the row's ranks and its scatter into the
// slots run in the task, on the task's own copy of the row's slots.
//
// Default: the ranks of a row are computed vectorised across pixels (each lane is one pixel
// comparing against every expert), then scattered to slots pixel by pixel.
//
// `pixel_tile` = 1: one vector of pixels at a time. Its keys (all experts) stay in L1, each
// expert's rank is computed just before it is scattered, and the scatter itself is vectorised
// across the pixels (lanes write distinct pixels). With many experts a whole row's keys and ranks
// (NE × W each) no longer fit in L1.
//
// `rows_per_task`: the gather of the selected scores is a few loads per pixel and slot, so one
// row is too little work for a parallel task; thread-pool hand-offs then cost more than the rows.
#include "route_topk_schedule.h"

namespace smoe {

using namespace Halide;

void schedule_route_outputs_cpu(Func indices, Func values, const Var &w, const Var &h, const Var &j, const Var &b,
                                const Var &row, int lanes, int rows_per_task) {
    const TailStrategy tail = TailStrategy::GuardWithIf;
    indices.fuse(h, b, row).reorder(w, j, row).parallel(row).vectorize(w, lanes, tail);
    values.fuse(h, b, row).reorder(w, j, row).parallel(row, rows_per_task, tail).vectorize(w, lanes, tail);
}

void schedule_route_topk_cpu(RouteTopKStages &s, const Knobs &knobs, const Target &target) {
    const int lanes = knobs["pixel_vector"] > 0 ? knobs["pixel_vector"] : target.natural_vector_size(Int(32));
    const TailStrategy tail = TailStrategy::GuardWithIf;
    Var row("row"), wo("wo"), wi("wi");
    Func indices = s.indices;
    schedule_route_outputs_cpu(indices, s.values, s.w, s.h, s.j, s.b, row, lanes, knobs["rows_per_task"]);

    s.slot_expert.compute_at(indices, row);
    if (knobs["pixel_tile"] == 1) {
        s.slot_expert.update().split(s.w, wo, wi, lanes, tail).reorder(wi, s.scatter, wo).vectorize(wi);
        // On the stack: a heap block per vector of pixels would cost more than its ranks.
        s.rank.compute_at(s.slot_expert, s.scatter).store_in(MemoryType::Stack);
        s.key.compute_at(s.slot_expert, wo).store_in(MemoryType::Stack);
    } else {
        s.slot_expert.update().reorder(s.scatter, s.w);
        s.rank.compute_at(indices, row);
        s.key.compute_at(indices, row);
    }
    s.key.vectorize(s.w, lanes, tail);
    s.rank.vectorize(s.w, lanes, tail);
    // Both counting passes run across a vector of pixels, the other experts in the outer loop.
    const RDom passes[] = {s.below, s.above};
    for (int pass = 0; pass < 2; ++pass) {
        s.rank.update(pass).reorder(s.w, passes[pass], s.e).vectorize(s.w, lanes, tail);
    }
}

}  // namespace smoe
