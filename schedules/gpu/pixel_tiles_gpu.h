// The CUDA schedule shared by the pixel-major kernels (forward, backward data).
#pragma once

#include "Halide.h"
#include "knobs.h"

namespace smoe {

struct PixelTileStagesGpu {
    Halide::Func accumulator;  // (w, h, channel, b), one update reducing over `reduction`
    Halide::Func output;       // (w, h, channel, b)
    Halide::Var w, h, channel, b;
    std::vector<Halide::RVar> reduction;  // innermost first
};

void schedule_pixel_tiles_gpu(PixelTileStagesGpu &stages, const Knobs &knobs);

}  // namespace smoe
