// CPU schedule of the RC loss: slot counts, then labels, computed once (they feed both the gradient and the loss),
// one grid row per task, vectorised across the row; the loss sums rows in parallel, then in order.
#include "rc_loss_schedule.h"

namespace smoe {

using namespace Halide;

void schedule_rc_loss_cpu(RCLossStages &s, const Knobs &knobs, const Target &target) {
    const int lanes = knobs["vector_width"] > 0 ? knobs["vector_width"] : target.natural_vector_size(s.grad_routing.type());
    const TailStrategy tail = TailStrategy::GuardWithIf;
    const RVar slot = s.label.rvars(0)[0];
    if (s.shared_routing) {
        s.label.compute_root().reorder(s.w, s.e, s.h).parallel(s.h).vectorize(s.w, lanes, tail);
        s.label.update().reorder(s.w, slot, s.h).parallel(s.h).vectorize(s.w, lanes, tail);
        s.wrong_share.compute_at(s.label, s.h).vectorize(s.w, lanes, tail);
        // Slot counts feed both the label's pure and scatter stages, so they are computed first.
        s.slot_count.compute_root().reorder(s.w, s.j, s.h).parallel(s.h).vectorize(s.w, lanes, tail);
        const RVar sample = s.slot_count.rvars(0)[0];
        s.slot_count.update().reorder(s.w, sample, s.j, s.h).parallel(s.h).vectorize(s.w, lanes, tail);
        s.correct.compute_at(s.slot_count, s.j).vectorize(s.w, lanes, tail);
        s.correct.update().vectorize(s.w, lanes, tail);
        s.grad_routing.reorder(s.w, s.e, s.h).parallel(s.h).vectorize(s.w, lanes, tail);
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
    s.row_sum.compute_root().parallel(s.row);
    // A row's terms (exp and log) vectorised first; the serial float64 sum then only adds.
    s.term.compute_at(s.row_sum, s.row).vectorize(s.w, lanes, tail);
    s.row_sum.update().parallel(s.row);
    s.total.compute_root();
    s.total.update();
}

}  // namespace smoe
