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

// The expert-major order over groups of pixels (generators/backward_weight_generator.cpp,
// group_pixels > 0, shared routing).
struct ExpertGroupStages {
    Halide::Func input;         // x with zero padding, (w, h, c, b)
    Halide::Func gated;         // dŷ, (w, h, jf, b)
    Halide::Func slot_of;       // (e, w, h): the slot selecting expert e, or -1; update over the slots
    Halide::Func pixel_mask;    // (e, g, h): bit i = pixel i of group g selects e; update over i
    Halide::Func group_pixel;   // (k, e, g, h): the k-th of them; update over i
    Halide::Func contribution;  // (kw, kh, c, row, g, h): a reduction over r = (the group's pixels, samples)
    Halide::Func partial;       // (kw, kh, c, row, band); update over rg = (g, row in band)
    Halide::Func total;         // (kw, kh, c, row); update sums the bands in order over t
    Halide::Func output;        // grad_weight, (kw, kh, c, row)
    Halide::Var kw, kh, c, row, band, e, g, k, w, h;
    Halide::RDom r, rg, t;
    Halide::RDom mask_pixels;  // the pixel mask's update, over the group's pixels
    Halide::Expr kernel_size;  // K
};

void schedule_backward_weight(BackwardWeightStages &stages, const Knobs &knobs,
                              const Halide::Target &target);
void schedule_expert_groups(ExpertGroupStages &stages, const Knobs &knobs, const Halide::Target &target);
void schedule_backward_weight_cpu(BackwardWeightStages &stages, const Knobs &knobs,
                                  const Halide::Target &target);
void schedule_backward_weight_gpu(BackwardWeightStages &stages, const Knobs &knobs,
                                  const Halide::Target &target);

}  // namespace smoe
