// CUDA schedule of the input gradient: schedules/gpu/pixel_tiles_gpu.cpp over input channels.
#include "backward_data_schedule.h"
#include "pixel_tiles_gpu.h"

namespace smoe {

void schedule_backward_data_gpu(BackwardDataStages &s, const Knobs &knobs, const Halide::Target &) {
    PixelTileStagesGpu tiles{s.gradient, s.output, s.w, s.h, s.c, s.b, {s.r.z, s.r.x, s.r.y}};
    schedule_pixel_tiles_gpu(tiles, knobs);
}

}  // namespace smoe
