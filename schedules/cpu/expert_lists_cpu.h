// CPU schedule of the inverse of a shared routing (generators/expert_lists.h), computed where the
// weight gradient's expert groups use it.
#pragma once

#include "Halide.h"
#include "expert_lists.h"

namespace smoe {

// Every stage of `lists` at `at` (a band or a row of the consumer), vectorised over the experts
// (`lanes` 32-bit lanes) where the loads are contiguous.
void schedule_expert_lists(ExpertLists &lists, const Halide::LoopLevel &at, int lanes);

}  // namespace smoe
