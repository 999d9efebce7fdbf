// How the routing generator runs: its stages, knobs and schedule entry points.
#pragma once

#include "Halide.h"
#include "knobs.h"

namespace smoe {

// The Funcs of generators/route_topk_generator.cpp that a schedule makes decisions about.
struct RouteTopKStages {
    Halide::Func key;          // order-preserving integer key of each score, (w, h, e, b)
    Halide::Func rank;         // rank of each expert at its pixel, (w, h, e, b); update 0 counts
                               // the experts below e that beat it, update 1 those above
    Halide::Func slot_expert;  // expert of each slot, (w, h, j, b): a scatter of every expert
                               // by rank, no pure values; slot E collects the ranks >= E
    Halide::Func indices, values;
    Halide::Var w, h, e, j, b;
    Halide::RDom below, above, scatter;
};

void schedule_route_topk(RouteTopKStages &stages, const Knobs &knobs, const Halide::Target &target);
void schedule_route_topk_cpu(RouteTopKStages &stages, const Knobs &knobs, const Halide::Target &target);
void schedule_route_topk_gpu(RouteTopKStages &stages, const Knobs &knobs, const Halide::Target &target);

}  // namespace smoe
