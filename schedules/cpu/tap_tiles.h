// The CPU schedule of the weight gradient's `formulation=1` (shared routing): per (pixel, slot) a
// register tile of all taps x a block of channels, summed over the batch.
#pragma once

#include "Halide.h"
#include "backward_weight_schedule.h"
#include "knobs.h"

namespace smoe {

void schedule_tap_tiles_cpu(BackwardWeightStages &stages, const Knobs &knobs, const Halide::Target &target);

}  // namespace smoe
