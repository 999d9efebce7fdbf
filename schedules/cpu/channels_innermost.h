// The copies that re-lay out an input channel-innermost (the forward's channel dots and AMX strips,
// the weight gradient's block inputs and dense rows), shared so that they stay one decision.
#pragma once

#include <vector>

#include "Halide.h"

namespace smoe {

// Schedules `copy`, whose storage keeps the channels `c` innermost, as a vector of `channel_lanes`
// channels for each of `pixels` unrolled neighbouring pixels along `w`, the blocks of channels
// outside the pixels, then the tiles of pixels, then `outer` (innermost first). Returns `copy` for
// the caller's compute level and parallel loop.
Halide::Func &schedule_channels_innermost_copy(Halide::Func &copy, const Halide::Var &c, const Halide::Var &w,
                                               int channel_lanes, int pixels, const std::vector<Halide::Var> &outer);

}  // namespace smoe
