// CUDA schedule of the forward: schedules/gpu/pixel_tiles_gpu.cpp over output channels.
#include "forward_schedule.h"
#include "pixel_tiles_gpu.h"

namespace smoe {

void schedule_forward_gpu(ForwardStages &s, const Knobs &knobs, const Halide::Target &) {
    PixelTileStagesGpu tiles{s.response, s.output, s.w, s.h, s.jf, s.b, {s.r.z, s.r.x, s.r.y}};
    schedule_pixel_tiles_gpu(tiles, knobs);
}

}  // namespace smoe
