// How the RC-loss generator runs: its stages and schedule entry points.
#pragma once

#include "Halide.h"
#include "knobs.h"

namespace smoe {

// The Funcs of generators/rc_loss_generator.cpp that a schedule makes decisions about.
struct RCLossStages {
    Halide::Func correct;     // (w, h, j, b): 1, then cleared by any of the F channels outside the quantile
    Halide::Func slot_count;  // shared: (w, h, j), a count over the batch; per-sample: = correct
    Halide::Func wrong_share; // (w, h[, b]): the wrong count over NE − E, once per pixel
    Halide::Func label;       // (w, h, e[, b]): the wrong share, then a scatter over the slots
    Halide::Func decay;       // (w, h, e[, b]): exp(-|z|), shared by a score's gradient and BCE term
    Halide::Func term;        // (w, h, e[, b]): one score's (batch-summed) BCE term
    Halide::Func row_sum;     // (h): the BCE terms of one grid row, in float64
    Halide::Func total;       // (): the rows in order
    Halide::Func grad_routing, loss;  // outputs
    Halide::Var w, h, j, e, b;
    bool shared_routing;
};

void schedule_rc_loss(RCLossStages &stages, const Knobs &knobs, const Halide::Target &target);
void schedule_rc_loss_cpu(RCLossStages &stages, const Knobs &knobs, const Halide::Target &target);
void schedule_rc_loss_gpu(RCLossStages &stages, const Knobs &knobs, const Halide::Target &target);

}  // namespace smoe
