// CPU schedule of the RC loss: slot counts, then labels, computed once (they feed both the gradient and the loss),
// one grid row per task, vectorised across the row; the loss sums rows in parallel, then in order.
#include "rc_loss_schedule.h"

namespace smoe {

using namespace Halide;

namespace {

// A row's float64 sum as vector lanes of partial sums across the row, then the lanes in order: a
// fixed order, so the loss stays deterministic, without one long chain of dependent adds.
void vectorize_row_sum(RCLossStages &s, Func at) {
    // Fixed, not the target's width, so that every target adds in the same order.
    constexpr int lanes = 8;
    const RVar across = s.row_sum.rvars(0)[0];
    RVar block("row_block"), in_block("row_lane");
    Var lane("row_l");
    s.row_sum.update().split(across, block, in_block, lanes, TailStrategy::GuardWithIf);
    Func partial = s.row_sum.update().rfactor(in_block, lane);
    partial.compute_at(at, s.h).vectorize(lane);
    partial.update().reorder(lane, block).vectorize(lane);
}

}  // namespace

void schedule_rc_loss_cpu(RCLossStages &s, const Knobs &knobs, const Target &target) {
    const int lanes = knobs["vector_width"] > 0 ? knobs["vector_width"] : target.natural_vector_size(s.term.type());
    const TailStrategy tail = TailStrategy::GuardWithIf;
    const RVar slot = s.label.rvars(0)[0];
    if (s.shared_routing) {
        // One parallel loop over grid rows does everything: the row's slot counts and labels,
        // its gradient, and (fused into the same loop) its loss terms.
        s.grad_routing.reorder(s.w, s.e, s.h).parallel(s.h).vectorize(s.w, lanes, tail);
        s.label.compute_at(s.grad_routing, s.h).vectorize(s.w, lanes, tail);
        s.label.update().reorder(s.w, slot).vectorize(s.w, lanes, tail);
        s.wrong_share.compute_at(s.grad_routing, s.h).vectorize(s.w, lanes, tail);
        s.slot_count.compute_at(s.grad_routing, s.h).vectorize(s.w, lanes, tail);
        const RVar sample = s.slot_count.rvars(0)[0];
        s.slot_count.update().reorder(s.w, sample, s.j).vectorize(s.w, lanes, tail);
        // Its storage (the row's samples, a run-time size, so on the heap) once per row, not per slot.
        s.correct.compute_at(s.slot_count, s.j).hoist_storage(s.grad_routing, s.h).vectorize(s.w, lanes, tail);
        s.correct.update().vectorize(s.w, lanes, tail);
        s.row_sum.compute_root();
        s.term.compute_at(s.grad_routing, s.h).vectorize(s.w, lanes, tail);
        // The row's exponentials once, read by its terms and its gradient.
        s.decay.compute_at(s.grad_routing, s.h).vectorize(s.w, lanes, tail);
        vectorize_row_sum(s, s.grad_routing);
        s.row_sum.update().parallel(s.h).compute_with(s.grad_routing, s.h);
        s.total.compute_root();
        s.total.update();
        return;
    } else {
        Var rows("rows");
        s.label.compute_root().reorder(s.w, s.e, s.h, s.b).fuse(s.h, s.b, rows).parallel(rows)
            .vectorize(s.w, lanes, tail);
        s.label.update().reorder(s.w, slot, s.h, s.b).fuse(s.h, s.b, rows).parallel(rows).vectorize(s.w, lanes, tail);
        s.wrong_share.compute_at(s.label, rows).vectorize(s.w, lanes, tail);
        s.slot_count.compute_root().reorder(s.w, s.j, s.h, s.b).fuse(s.h, s.b, rows).parallel(rows)
            .vectorize(s.w, lanes, tail);
        s.correct.compute_at(s.slot_count, rows).vectorize(s.w, lanes, tail);
        s.correct.update().vectorize(s.w, lanes, tail);
        s.grad_routing.reorder(s.w, s.e, s.h, s.b).fuse(s.h, s.b, rows).parallel(rows).vectorize(s.w, lanes, tail);
    }
    s.row_sum.compute_root().parallel(s.h);
    // A row's terms (exp and log) vectorised first; the float64 sum then only adds.
    s.term.compute_at(s.row_sum, s.h).vectorize(s.w, lanes, tail);
    s.row_sum.update().parallel(s.h);
    vectorize_row_sum(s, s.row_sum);
    s.total.compute_root();
    s.total.update();
}

}  // namespace smoe
