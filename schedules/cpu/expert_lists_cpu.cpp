// CPU schedule of the inverse of a shared routing: which experts each pixel selects (bytes) and the
// running counts (16 bits) are vectors over the experts; the scatter of the slots and the list
// starts (a scan over the experts) stay serial.
#include "expert_lists_cpu.h"

namespace smoe {

using namespace Halide;

void schedule_expert_lists(ExpertLists &l, const LoopLevel &at, int lanes) {
    const TailStrategy tail = TailStrategy::GuardWithIf;
    l.selects.compute_at(at).reorder_storage(l.e, l.w, l.h).vectorize(l.e, lanes * 4, tail);
    l.selects.update().unscheduled();  // per pixel its slots, scattered: nothing to vectorise
    l.before.compute_at(at).vectorize(l.e, lanes * 2, tail);
    l.before.update().reorder(l.e, l.later, l.g, l.h).vectorize(l.e, lanes * 2, tail);
    // Stored, not inlined: a loop bounded by it then ends at a plain load, from which Halide proves
    // the loop's predicate, so the loop carries no test and a register tile inside it is never
    // spilled to the stack (the weight gradient at ens10-like, JIT: 25.2 -> 22.4 ms).
    l.pixel_count.compute_at(at).vectorize(l.e, lanes, tail);
    l.list_start.compute_at(at);
    l.list_start.update().reorder(l.next, l.g, l.h);
}

}  // namespace smoe
