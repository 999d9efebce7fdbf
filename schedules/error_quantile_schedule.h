// How the error-quantile generator runs: its stages and schedule entry points.
#pragma once

#include <vector>

#include "Halide.h"
#include "knobs.h"

namespace smoe {

// The Funcs of generators/error_quantile_generator.cpp that a schedule makes decisions about.
struct ErrorQuantileStages {
    Halide::Func magnitude;                // |ε|·s, (n, b)
    std::vector<Halide::Func> histograms;  // per radix pass, (d, b): zero, then a count over n
    std::vector<int> bins;                 // per pass, the histogram's extent in d
    std::vector<Halide::Func> block_hits;  // per pass after the first, (d, b): block d holds a key with the prefix
    std::vector<Halide::Func> group_totals;      // per pass, (d, b): the count of each group of 16 bins
    std::vector<Halide::Func> group_running;     // per pass, (d, b): running sum of the group counts
    std::vector<Halide::Func> groups;            // per pass, (b): the group holding the wanted rank
    std::vector<Halide::Func> in_group_running;  // per pass, (d, b): running count over that group's bins
    std::vector<Halide::Func> buckets;           // per pass, (b): the bin in that group holding the rank
    std::vector<Halide::Func> final_pass;  // (b): keys <= the lower key, next key above, NaNs
    Halide::Func output;                   // quantile, (b)
    Halide::Var n, b, d;
};

void schedule_error_quantile(ErrorQuantileStages &stages, const Knobs &knobs, const Halide::Target &target);
void schedule_error_quantile_cpu(ErrorQuantileStages &stages, const Knobs &knobs, const Halide::Target &target);
void schedule_error_quantile_gpu(ErrorQuantileStages &stages, const Knobs &knobs, const Halide::Target &target);

}  // namespace smoe
