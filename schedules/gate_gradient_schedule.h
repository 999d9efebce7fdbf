// How the gate-gradient generator runs: its stages and schedule entry points.
#pragma once

#include "Halide.h"
#include "knobs.h"

namespace smoe {

// The Funcs of generators/gate_gradient_generator.cpp that a schedule makes decisions about.
struct GateGradientStages {
    Halide::Func slot_gradient;  // (w, h, j[, b]), a reduction over F (and the batch)
    Halide::Func gradient;       // (w, h, e[, b]), zero then a scatter over the slots s
    Halide::Func output;         // grad_routing
    Halide::Var w, h, j, e, b;
    Halide::RDom s;
    bool shared_routing;
};

void schedule_gate_gradient(GateGradientStages &stages, const Knobs &knobs, const Halide::Target &target);
void schedule_gate_gradient_cpu(GateGradientStages &stages, const Knobs &knobs, const Halide::Target &target);
void schedule_gate_gradient_gpu(GateGradientStages &stages, const Knobs &knobs, const Halide::Target &target);

}  // namespace smoe
