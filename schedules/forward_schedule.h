// How the forward generator runs: the stages the schedules decide about, the knobs, and the entry.
#pragma once

#include "Halide.h"
#include "knobs.h"

namespace smoe {

// The Funcs of generators/forward_generator.cpp that a schedule makes decisions about.
struct ForwardStages {
    Halide::Func input;       // x with zero padding outside the grid, (w, h, c, b)
    Halide::Func bank;        // the weight bank, (kw, kh, c, expert·F + f)
    Halide::Func expert_row;  // weight row of each output channel, (w, h, jf[, b])
    Halide::Func response;    // ungated expert response, a reduction over r
    Halide::Func output;      // y, (w, h, jf, b)
    Halide::Var w, h, jf, b;
    Halide::RDom r;           // (kw, kh, c), or (kw, kh, block of 32 channels, channel) with bf16_pairs
    bool shared_routing;
    bool bf16_pairs;          // input and bank hold bfloat16; products of channel pairs are summed together
    Halide::Expr batch, out_channels, width;  // run-time extents, for specialisations
};

void schedule_forward(ForwardStages &stages, const Knobs &knobs, const Halide::Target &target);
void schedule_forward_cpu(ForwardStages &stages, const Knobs &knobs, const Halide::Target &target);
void schedule_forward_gpu(ForwardStages &stages, const Knobs &knobs, const Halide::Target &target);

}  // namespace smoe
