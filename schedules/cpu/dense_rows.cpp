// CPU schedule of the weight gradient's dense order (generator dense_rows=true, shared routing).
//
// A matrix product: per expert row and tap, the row's dŷ at every pixel and sample (zero where the
// pixel does not select the expert) against the receptive fields there. At batch 1 the sparse
// orders are bound by gathered rows read and written per pixel; this one reads its operands in
// order and holds its sums in registers, at twice their products.
//
// - dŷ is spread once per call to every expert row, rows innermost (row_error), and the input is
//   re-laid out channels innermost (channels_last): each step of a tile's sum reads one block of
//   channels of one receptive field and broadcasts one dŷ per row.
// - A register tile per tap, `channel_vectors` channel vectors x as many rows as make three
//   quarters of the vector registers, sums over the whole grid and batch, then is written once.
//   The row tiles are the tasks: each output is one task's sum in a fixed order, so the result
//   does not depend on the number of threads.
// - Tiles at the edges of the channels and rows overlap their neighbours (ShiftInwards) so that
//   every tile has the same fixed size; fewer channels or rows than a tile take narrower code.
#include "backward_weight_schedule.h"
#include "channels_innermost.h"

namespace smoe {

using namespace Halide;

void schedule_dense_rows(DenseRowStages &s, const Knobs &knobs, const Target &target) {
    if (target.has_gpu_feature()) {
        throw CompileError("smoe: the weight gradient's dense order (dense_rows) is scheduled for CPUs only");
    }
    const int registers = vector_registers(target);
    const int lanes = target.natural_vector_size(s.total.type());
    // 4 x 6 accumulators of 32 registers on AVX-512, 2 x 6 of 16 on AVX2: the rest hold the
    // channel vectors of one step and a broadcast.
    const int channel_vectors = knobs["channel_vectors"] > 0 ? knobs["channel_vectors"] : registers / 8;
    const int tile_rows = (registers * 3 / 4) / channel_vectors;
    const int block = lanes * channel_vectors;
    const TailStrategy tail = TailStrategy::GuardWithIf;

    s.row_error.compute_root().vectorize(s.row, lanes, tail).parallel(s.h);
    s.row_error.update().reorder(s.slots, s.w, s.b, s.h).parallel(s.h);
    s.channels_last.compute_root();
    schedule_channels_innermost_copy(s.channels_last, s.c, s.w, lanes, lanes, {s.b, s.h}).parallel(s.h);

    Var co("co"), ci("ci"), ro("ro"), ri("ri");
    const Expr whole_tiles = s.channels >= block && s.rows >= tile_rows;
    Func out = s.output;
    out.specialize(whole_tiles)
        .split(s.c, co, ci, block, TailStrategy::ShiftInwards)
        .split(s.row, ro, ri, tile_rows, TailStrategy::ShiftInwards)
        .reorder(ci, ri, s.kw, s.kh, co, ro)
        .parallel(ro)
        .vectorize(ci, lanes)
        .unroll(ci)
        .unroll(ri);
    out.split(s.c, co, ci, lanes, tail).reorder(ci, s.kw, s.kh, co, s.row).parallel(s.row).vectorize(ci);

    // The tile's sums: computed per tap, the grid and batch outermost so that the tile stays in
    // registers across the whole sum.
    s.total.compute_at(out, s.kw).vectorize(s.c, lanes, tail).unroll(s.c, channel_vectors, tail).unroll(s.row);
    s.total.update()
        .reorder(s.c, s.row, s.r.x, s.r.y, s.r.z)
        .vectorize(s.c, lanes, tail)
        .unroll(s.c, channel_vectors, tail)
        .unroll(s.row);
}

}  // namespace smoe
