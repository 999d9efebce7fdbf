// CPU schedules of the forward.
//
// formulation=0: pixel-major register tiles (schedules/cpu/pixel_tiles.cpp) over output channels x
// batch, the batch in the vector lanes, reducing over input channels innermost, then kw, kh. The
// experts' rows are gathered per tile.
// formulation=1: channel dots (schedules/cpu/channel_dots.cpp), the input channels in the lanes.
// row_vectors=1 (shared routing): vectors along grid rows (schedules/cpu/forward_row_vectors.cpp),
// for layers with few channels and slots.
#include "channel_dots.h"
#include "forward_row_vectors.h"
#include "forward_schedule.h"
#include "pixel_tiles.h"

namespace smoe {

void schedule_forward_cpu(ForwardStages &s, const Knobs &knobs, const Halide::Target &target) {
    if (knobs["formulation"] == 1) {
        schedule_channel_dots_cpu(s, knobs, target);
        return;
    }
    if (knobs["row_vectors"] == 1 && s.shared_routing && !s.bf16_pairs) {
        schedule_forward_row_vectors_cpu(s, knobs, target);
        return;
    }
    PixelTileStages tiles{s.input, s.bank, s.expert_row, false, false, s.response, s.output, s.w, s.h, s.jf, s.b,
                          s.r.z, {s.r.x, s.r.y}, s.batch, s.out_channels, s.width};
    tiles.dot_partials = knobs["dot_partials"] == 1;
    schedule_pixel_tiles_cpu(tiles, knobs, target);
}

}  // namespace smoe
