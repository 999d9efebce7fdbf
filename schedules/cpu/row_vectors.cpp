#include "row_vectors.h"

namespace smoe {

using namespace Halide;

void schedule_row_vector_sums(Func output, Func sum, const Var &w, const Var &h, const RowVectorLoops &loops,
                              const std::vector<VarOrRVar> &middle, const std::vector<VarOrRVar> &reduction,
                              int row_tile, int lanes) {
    const TailStrategy tail = TailStrategy::GuardWithIf;
    // Independent accumulator vectors along the row: the reduction's adds do not wait on each other.
    constexpr int kRowVectors = 4;
    Var wi("wi"), wv("wv"), wl("wl");
    std::vector<VarOrRVar> order = {wi, loops.wo};
    order.insert(order.end(), middle.begin(), middle.end());
    order.push_back(loops.ho);
    output.split(h, loops.ho, loops.hi, row_tile, tail)
        .split(w, loops.wo, wi, lanes * kRowVectors, tail)
        .reorder(order)
        .parallel(loops.ho)
        .vectorize(wi, lanes)
        .unroll(wi);
    sum.compute_at(output, loops.wo).vectorize(w, lanes).unroll(w);
    std::vector<VarOrRVar> inner = {wl, wv};
    inner.insert(inner.end(), reduction.begin(), reduction.end());
    sum.update().split(w, wv, wl, lanes).reorder(inner).vectorize(wl).unroll(wv);
}

}  // namespace smoe
