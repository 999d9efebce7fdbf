// How the backward-weight generator runs: its stages, knobs and schedule entry points.
#pragma once

#include "Halide.h"
#include "knobs.h"

namespace smoe {

// The Funcs of generators/backward_weight_generator.cpp that a schedule makes decisions about.
struct BackwardWeightStages {
    Halide::Func input;         // x with zero padding, (w, h, c, b)
    Halide::Func gated;         // dŷ, (w, h, jf, b)
    Halide::Func contribution;  // (kw, kh, c, w, h, jf[, b]); shared routing: a reduction over rb
    Halide::Func partial;       // (kw, kh, c, row, band); update scatters over p
    Halide::Func total;         // (kw, kh, c, row); update sums the bands in order over t
    Halide::Func output;        // grad_weight, (kw, kh, c, row)
    Halide::Var kw, kh, c, row, band, w, h, jf, b;
    Halide::RDom rb, p, t;
    bool shared_routing;
    Halide::Expr channels;     // C, for specialisations
    Halide::Expr kernel_size;  // K
};

void schedule_backward_weight(BackwardWeightStages &stages, const Knobs &knobs,
                              const Halide::Target &target);
void schedule_backward_weight_cpu(BackwardWeightStages &stages, const Knobs &knobs,
                                  const Halide::Target &target);
void schedule_backward_weight_gpu(BackwardWeightStages &stages, const Knobs &knobs,
                                  const Halide::Target &target);

}  // namespace smoe
