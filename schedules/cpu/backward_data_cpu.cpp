// CPU schedule of the input gradient: pixel-major register tiles (schedules/cpu/pixel_tiles.cpp)
// over input channels x batch, reducing over the output channels of the neighbour pixels
// innermost, then kw, kh. The rows of the neighbours' experts are computed a few grid rows at a
// time, like the batch-innermost dŷ.
#include "backward_data_schedule.h"
#include "pixel_tiles.h"

namespace smoe {

void schedule_backward_data_cpu(BackwardDataStages &s, const Knobs &knobs, const Halide::Target &target) {
    PixelTileStages tiles{s.grad_out, s.bank, s.expert_row, true, true, s.gradient, s.output, s.w, s.h, s.c, s.b,
                          s.r.z, {s.r.x, s.r.y}, s.batch, s.channels, s.width};
    schedule_pixel_tiles_cpu(tiles, knobs, target);
}

}  // namespace smoe
