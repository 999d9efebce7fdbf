// CPU schedule of the gate gradient: one grid row per task; slot sums vectorised across pixels,
// then each pixel's slots scattered to its experts.
#include "gate_gradient_schedule.h"

namespace smoe {

using namespace Halide;

void schedule_gate_gradient_cpu(GateGradientStages &s, const Knobs &knobs, const Target &target) {
    const int lanes = knobs["vector_width"] > 0 ? knobs["vector_width"] : target.natural_vector_size(s.gradient.type());
    Func out = s.output;
    Var row("row");
    // Rows outermost: a row's slot sums and scatter are computed once, for all its experts.
    if (s.shared_routing) {
        out.reorder(s.w, s.e, s.h).parallel(s.h).vectorize(s.w, lanes, TailStrategy::GuardWithIf);
        s.gradient.compute_at(out, s.h).vectorize(s.w, lanes, TailStrategy::GuardWithIf);
    } else {
        out.reorder(s.w, s.e, s.h, s.b).fuse(s.h, s.b, row).parallel(row).vectorize(s.w, lanes, TailStrategy::GuardWithIf);
        s.gradient.compute_at(out, row).vectorize(s.w, lanes, TailStrategy::GuardWithIf);
    }
    s.gradient.update().reorder(s.s, s.w);
    s.slot_gradient.compute_at(s.gradient, s.h).vectorize(s.w, lanes, TailStrategy::GuardWithIf);
    s.slot_gradient.update().vectorize(s.w, lanes, TailStrategy::GuardWithIf);
}

}  // namespace smoe
