// CPU schedule of the forward's union_tiles algorithm (generator parameter union_tiles=true,
// shared routing).
//
// - Every tile's union (uses, position, members, blocks) is found once per call, before the
//   products (the routing is the same for every sample): a few thousand scalar steps per tile
//   against its millions of FMAs per sample.
// - One task per tile row of a sample.
// - Register tile: block_rows union rows x `vectors` pixel vectors along `rows` of the tile's grid
//   rows, each a vector of sums over the whole receptive field (kw innermost, then kh, then the
//   channels, the order the bank holds a row in). Per step it loads `vectors` input vectors and
//   broadcasts block_rows weights for block_rows x vectors FMAs; a block's rows
//   (block_rows · C·K·K weights) stay in L1 while it sweeps the tile's pixels and samples.
// - Only the blocks the union fills are computed: the guard sits on the block loop, outside the
//   register tile.
// - The output reads each pixel's rows from the tile's responses, indexed by bank row: one per-lane
//   gather per output vector (LLVM scalarises it on x86). Every slot of a vector of pixels before
//   the next vector, so that the lines the gathers touch (one per union row) stay in L1.
// - The input, zero-padded, is materialised once per call, so that the hot loop loads it without
//   bounds checks.
#include "forward_schedule.h"

#include <algorithm>

namespace smoe {

using namespace Halide;

void schedule_forward_union_tiles(UnionTileStages &s, const Target &target) {
    const int lanes = target.natural_vector_size(s.block_response.type());
    const int registers = vector_registers(target);
    // 3/4 of the vector registers accumulate; the rest hold the step's input vectors and weights.
    const int accumulators = registers * 3 / 4;
    // The register tile's pixels: vectors along the grid row, then rows of the tile.
    const int pixel_vectors = std::max(1, accumulators / s.block_rows);
    const int vectors = std::max(1, std::min(s.tile_width / lanes, pixel_vectors));
    const int rows = std::max(1, std::min(s.tile_height, pixel_vectors / vectors));

    Var wo("wo"), ho("ho"), wt("wt"), ht("ht"), vector("vector"), lane("lane"), task("task");
    Func out = s.output;
    out.split(s.w, wo, wt, s.tile_width, TailStrategy::GuardWithIf)
        .split(s.h, ho, ht, s.tile_height, TailStrategy::GuardWithIf)
        .split(wt, vector, lane, lanes, TailStrategy::GuardWithIf)
        .reorder(lane, s.jf, vector, ht, wo, ho, s.b)
        .fuse(ho, s.b, task)
        .parallel(task)
        .vectorize(lane);
    // One output row per expert (F = 1): no divisions by F in the output's loop over slots.
    out.specialize(s.out_per_expert == 1);

    // The tiles' unions, once per call, a row of tiles per task.
    for (Func f : {s.uses, s.position, s.members, s.blocks}) f.compute_root().parallel(s.ty);
    s.uses.vectorize(s.e, lanes, TailStrategy::GuardWithIf);
    // The scatters and the running count: serial scalar steps within a tile.
    for (Func f : {s.uses, s.position, s.members}) f.update().parallel(s.ty);

    Var wg("wg"), wv("wv"), hg("hg"), hv("hv");
    s.union_response.compute_at(out, wo);
    s.union_response.update()
        .split(s.wi, wg, wv, lanes * vectors, TailStrategy::GuardWithIf)
        .split(s.hi, hg, hv, rows, TailStrategy::GuardWithIf)
        .reorder(wv, s.filled_row, hv, wg, hg, s.b, s.filled)
        .vectorize(wv, lanes);

    // The register tile, over the whole receptive field.
    const std::vector<Var> a = s.block_response.args();  // (wi, hi, ui, block, tx, ty, b)
    auto in_registers = [&](Stage stage) {
        stage.vectorize(a[0], lanes, TailStrategy::GuardWithIf).unroll(a[0]).unroll(a[1]).unroll(a[2]);
    };
    s.block_response.compute_at(s.union_response, wg);
    in_registers(s.block_response);
    Stage sweep = s.block_response.update();
    sweep.reorder(a[0], a[1], a[2], s.r.x, s.r.y, s.r.z, a[3], a[4], a[5], a[6]);
    // 3 x 3 kernels: the taps unrolled, one loop step per channel, not a loop of 3 taps inside it.
    in_registers(sweep.specialize(s.r.x.extent() == 3).unroll(s.r.x).unroll(s.r.y));
    in_registers(sweep);

    const std::vector<Var> in = s.input.args();  // (w, h, c, b)
    Var cb("cb");
    s.input.compute_root().fuse(in[2], in[3], cb).parallel(cb).vectorize(in[0], lanes, TailStrategy::GuardWithIf);
}

}  // namespace smoe
