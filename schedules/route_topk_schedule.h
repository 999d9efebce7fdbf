// How the routing generator runs: its stages, knobs and schedule entry points.
#pragma once

#include <vector>

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

// The Funcs of the routing generator's selection first (select_first=true, CPU).
struct RouteSelectStages {
    Halide::Func key;                       // signed order-preserving key, (w, h, e, b)
    std::vector<Halide::Func> counts;       // per key bit from the top: keys below the candidate, (w, h, b)
    std::vector<Halide::Func> thresholds;   // the threshold after each bit, (w, h, b)
    std::vector<Halide::RDom> count_domains;
    Halide::Func greater;      // keys above the threshold, (w, h, b)
    Halide::Func before;       // (w, h, e, b): keys equal to the threshold and above it before e
    Halide::Func chosen;       // (w, h, i, b): the i-th selected expert; entry E is spare
    Halide::Func chosen_key;   // (w, h, i, b): its key
    Halide::Func block_rank;   // (w, h, r, block, b): the rank of list position block·rank_block + r
    Halide::Func slot_expert;  // (w, h, j, b): a scatter of the chosen by rank, no pure values
    Halide::Func indices, values;
    Halide::Var w, h, e, i, j, b, r, block;
    int rank_block = 1;
    // block_rank's updates: the positions before the block, after it, and inside it.
    Halide::RDom over_greater, later, gather, earlier, after, inside, scatter;
};

void schedule_route_topk(RouteTopKStages &stages, const Knobs &knobs, const Halide::Target &target);
void schedule_route_topk_cpu(RouteTopKStages &stages, const Knobs &knobs, const Halide::Target &target);
void schedule_route_topk_gpu(RouteTopKStages &stages, const Knobs &knobs, const Halide::Target &target);
void schedule_route_selection(RouteSelectStages &stages, const Knobs &knobs, const Halide::Target &target);
// Both CPU schedules' outputs: one task per grid row (`row`, h and b fused), vectors along the row.
void schedule_route_outputs_cpu(Halide::Func indices, Halide::Func values, const Halide::Var &w, const Halide::Var &h,
                                const Halide::Var &j, const Halide::Var &b, const Halide::Var &row, int lanes,
                                int rows_per_task);

}  // namespace smoe
