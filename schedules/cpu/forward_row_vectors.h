// The CPU schedule of the forward's `row_vectors` (shared routing): the output vectorised along grid
// rows, for layers with few channels and slots.
#pragma once

#include "Halide.h"
#include "forward_schedule.h"
#include "knobs.h"

namespace smoe {

void schedule_forward_row_vectors_cpu(ForwardStages &stages, const Knobs &knobs, const Halide::Target &target);

}  // namespace smoe
