// The CPU schedule shared by the pixel-major kernels (forward, backward data): at every pixel the
// output [channels x batch] is a small GEMM of gathered expert weights with a batch-innermost
// operand, computed in register tiles of channels x batch vectors.
#pragma once

#include "Halide.h"
#include "knobs.h"

namespace smoe {

struct PixelTileStages {
    Halide::Func operand;      // (w, h, k, b): re-laid out batch-innermost, a few rows at a time
    Halide::Func bank;         // (kw, kh, c, row): re-laid out channel-innermost once per call
    Halide::Func expert_row;   // weight row per (w, h, slot[, b])
    bool expert_row_by_rows;   // true: computed for the rows of a task (read at neighbour pixels)
    // true: the channel tiles loop inside the outer reduction (kh, kw), over an L1-resident
    // accumulator of the pixel's whole [channels x batch]: the inner loop's gathered rows change
    // with the outer reduction, and this keeps them in L1 from one channel tile to the next.
    bool channel_tiles_inside_outer;
    Halide::Func accumulator;  // (w, h, channel, b) with one update whose reduction is `inner`...
    Halide::Func output;       // (w, h, channel, b)
    Halide::Var w, h, channel, b;
    Halide::RVar inner;                  // ...innermost reduction variable (long, unit stride)
    std::vector<Halide::RVar> outer;     // remaining reduction variables, inner to outer
    Halide::Expr batch, channels, width;  // run-time extents, for specialisations
    // With the L1 accumulator, N > 0 vectorises the output channels for every batch, N vectors
    // per register tile, instead of the batch (or, under 4 samples, dot products over `inner`).
    // Only worth it where the bank is contiguous along the output channels (the data gradient,
    // whose output channels are those of a gathered expert row).
    int channel_vectors = 0;
    // Register-tile path: true sums each dot product in a vector of partial sums over the whole
    // reduction (an rfactor of `inner`), for every batch; only worth it in a kernel that serves
    // batches under 4 alone.
    bool dot_partials = false;
};

void schedule_pixel_tiles_cpu(PixelTileStages &stages, const Knobs &knobs, const Halide::Target &target);

}  // namespace smoe
