// Row vectors: an output vectorised along grid rows (NCHW rows are contiguous), for layers with few
// channels. The forward and the data gradient share the output's loops and the summing Func's
// register tile.
#pragma once

#include <vector>

#include "Halide.h"

namespace smoe {

// The output's loops: tasks of rows (ho, parallel), a row (hi), tiles of vectors along it (wo).
struct RowVectorLoops {
    Halide::Var ho{"ho"}, hi{"hi"}, wo{"wo"};
};

// Splits `output` (w, h, ...) into tasks of `row_tile` rows and tiles of `kRowVectors` vectors of
// `lanes` along w, ordered tile, then `middle` (innermost first, hi among them), then the task;
// `sum` (pure over w, its update over `reduction`, innermost first) is computed per tile, its
// vectors independent accumulators over the whole reduction.
void schedule_row_vector_sums(Halide::Func output, Halide::Func sum, const Halide::Var &w, const Halide::Var &h,
                              const RowVectorLoops &loops, const std::vector<Halide::VarOrRVar> &middle,
                              const std::vector<Halide::VarOrRVar> &reduction, int row_tile, int lanes);

}  // namespace smoe
