// CPU schedule of the forward's `row_vectors` knob (shared routing).
//
// The pixel tiles put the batch in the lanes and the output channels in the registers, and read an
// input copied batch-innermost. A layer with one input channel and one slot (heat) fills one
// register of the tile, and that copy, a transpose of the whole input, is most of its time. Here
// the vectors run along grid rows instead, as NCHW lays them out:
//
// - Per task `row_tile` rows; per sample, row and output channel, `kRowVectors` neighbouring
//   vectors of the row accumulate independently over the receptive field (kh, kw, c innermost).
// - The weight each tap applies at each pixel (tap_weight) is gathered once per task for its rows
//   and read by every sample as vectors along the rows.
// - A sample's input rows are copied with their zero border as its rows advance (each row once),
//   so the summing loop reads dense vectors with no border tests; the copy's buffer is allocated
//   once per task, not per sample.
#include "forward_row_vectors.h"

#include "row_vectors.h"

namespace smoe {

using namespace Halide;

void schedule_forward_row_vectors_cpu(ForwardStages &s, const Knobs &knobs, const Target &target) {
    const int lanes = target.natural_vector_size(s.response.type());
    const TailStrategy tail = TailStrategy::GuardWithIf;
    const RowVectorLoops loops;
    const Var &ho = loops.ho, &hi = loops.hi;
    // Samples outside the rows, so that a sample's input rows slide down the task's.
    schedule_row_vector_sums(s.output, s.response, s.w, s.h, loops, {s.jf, hi, s.b}, {s.r.z, s.r.x, s.r.y},
                             knobs["row_tile"], lanes);
    const std::vector<Var> t = s.tap_weight.args();  // (kw, kh, c, w, h, jf)
    s.tap_weight.compute_at(s.output, ho)
        .reorder_storage(t[3], t[0], t[1], t[2], t[5], t[4])
        .reorder(t[3], t[0], t[1], t[2], t[5], t[4])
        .vectorize(t[3], lanes, tail);
    const std::vector<Var> in = s.input.args();  // (w, h, c, b)
    s.input.store_at(s.output, s.b).hoist_storage(s.output, ho).compute_at(s.output, hi).vectorize(in[0], lanes, tail);
}

}  // namespace smoe
