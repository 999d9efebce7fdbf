// The CPU schedule of the input gradient's `formulation=1`: every step an axpy of a gathered
// expert row along the input channels, so the vectors are full whatever the batch.
#pragma once

#include "Halide.h"
#include "backward_data_schedule.h"
#include "knobs.h"

namespace smoe {

void schedule_channel_axpys_cpu(BackwardDataStages &stages, const Knobs &knobs, const Halide::Target &target);

}  // namespace smoe
