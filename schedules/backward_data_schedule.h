// How the backward-data generator runs: its stages, knobs and schedule entry points.
#pragma once

#include "Halide.h"
#include "knobs.h"

namespace smoe {

// The Funcs of generators/backward_data_generator.cpp that a schedule makes decisions about.
struct BackwardDataStages {
    Halide::Func grad_out;    // dŷ, zero outside the grid, (w, h, jf, b)
    Halide::Func bank;        // the weight bank, (kw, kh, c, expert·F + f)
    Halide::Func expert_row;  // weight row of each output channel, (w, h, jf[, b])
    Halide::Func tap_weight;  // bank(kw, kh, c, expert_row(w, h, jf[, b])), (kw, kh, c, w, h, jf[, b])
    Halide::Func gradient;    // grad_x as a reduction over r
    Halide::Func output;      // grad_x, (w, h, c, b)
    Halide::Var w, h, c, b;
    Halide::RDom r;           // (kw, kh, jf)
    bool shared_routing;
    Halide::Expr batch, channels, width;  // run-time extents, for specialisations
};

void schedule_backward_data(BackwardDataStages &stages, const Knobs &knobs, const Halide::Target &target);
void schedule_backward_data_cpu(BackwardDataStages &stages, const Knobs &knobs, const Halide::Target &target);
void schedule_backward_data_gpu(BackwardDataStages &stages, const Knobs &knobs, const Halide::Target &target);

}  // namespace smoe
