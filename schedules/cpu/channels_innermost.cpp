#include "channels_innermost.h"

namespace smoe {

using namespace Halide;

// A pixel's channels are a strided read whatever the order. Why this one (Halide JIT alone, the
// weatherbench input, Intel Xeon family 6 model 167, bench/RESULTS.md): with the pixels vectorised
// too, the zero border's tests went into the lanes and every load through the stack (2.2 ms);
// unrolled pixels keep the border a scalar test per pixel (1.7 ms with the channel blocks inside
// the pixels, 1.05 outside); guarded pixel tiles rather than overlapping ones need no
// specialisation for narrow grids and copy each pixel once (0.95).
Func &schedule_channels_innermost_copy(Func &copy, const Var &c, const Var &w, int channel_lanes, int pixels,
                                       const std::vector<Var> &outer) {
    Var pixel_tile("pixel_tile"), pixel("pixel"), channel_block("channel_block"), channel("channel");
    std::vector<VarOrRVar> order = {channel, pixel, channel_block, pixel_tile};
    order.insert(order.end(), outer.begin(), outer.end());
    return copy.split(w, pixel_tile, pixel, pixels, TailStrategy::GuardWithIf)
        .split(c, channel_block, channel, channel_lanes, TailStrategy::GuardWithIf)
        .reorder(order)
        .vectorize(channel)
        .unroll(pixel);
}

}  // namespace smoe
