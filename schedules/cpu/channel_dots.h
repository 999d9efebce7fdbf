// The CPU schedule of the forward's `formulation=1`: every output is a dot product along the input
// channels, so the vectors are full whatever the batch.
#pragma once

#include "Halide.h"
#include "forward_schedule.h"
#include "knobs.h"

namespace smoe {

void schedule_channel_dots_cpu(ForwardStages &stages, const Knobs &knobs, const Halide::Target &target);

}  // namespace smoe
