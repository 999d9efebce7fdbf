// CPU schedule of the weight gradient's dense_tiles algorithm (bfloat16 on AMX tiles; generator
// parameter dense_tiles=true, avx512_sapphirerapids targets).
//
// - dŷ is scattered once per call onto every bank row, pixels innermost: per grid row, zeros, then
//   per slot a vector of pixels read in order (grid_error, in L1), then copied into the layout
//   padded to whole chunks and bands (row_error; schedule_scatter_onto_rows). The input is re-laid
//   out channel-innermost, then in AMX's pairs layout, one copy per parity of the tap's shift
//   (shifted_pairs). A tile step then reads 16 rows x 32 pixels of one and 32 pixels x 16 channels
//   of the other, 64 contiguous bytes per row.
// - Per block of pixels (a band of grid rows of one sample), blocks in order: each task, a tile of
//   kTileRows bank rows, runs every tap and tile of kTileColumns channels over the block on one AMX
//   tile (tdpbf16ps, 32 pixels per step), stores them (block_sums) and adds them to the total.
//   The block's operands, about 1 MB, stay in L2 across the task's 72 tiles; one tile over all
//   pixels would stream the whole input from L3 once per row tile. Each total element is one task's
//   sum in block order: the result does not depend on the number of threads.
// - Channels and rows are rounded up to whole tiles (the padding reads zeros): Halide's AMX matcher
//   takes constant 2-D tiles only.
#include "dense_tiles_schedule.h"

#include "channels_innermost.h"

namespace smoe {

using namespace Halide;

void schedule_backward_weight_dense_tiles(WeightTileStages &s, const Target &target) {
    const int lanes = target.natural_vector_size(Float(32));
    const TailStrategy tail = TailStrategy::GuardWithIf;

    // dŷ on every row once per call, 8 grid rows of a sample per task.
    const Var grid_rows("grid_rows"), grid_row("grid_row"), task("task");
    compute_whole_tiles(s.row_error, s.row, s.rows);
    s.row_error.compute_root().split(s.h, grid_rows, grid_row, 8, tail).fuse(grid_rows, s.b, task).parallel(task);
    schedule_scatter_onto_rows(s.row_error, s.grid_error, RowLayout::PixelsInnermost, s.scattered, grid_row, s.w,
                               s.slot, lanes);
    // The input channel-innermost, then per pair row its two pixels' channels as two vectors
    // interleaved: dense loads and stores, where reading the input for each pair row directly made
    // every value a strided load.
    const int channel_lanes = target.natural_vector_size(s.channels_last.type());
    const Var rows("rows");
    s.channels_last.compute_root();
    schedule_channels_innermost_copy(s.channels_last, s.c, s.w, channel_lanes, lanes, {s.h, s.b})
        .fuse(s.h, s.b, rows)
        .parallel(rows);
    // Row by row (the update), the samples over the threads.
    Var channel_pair("channel_pair"), parity("parity");
    s.shifted_pairs.compute_root().bound_storage(s.pair, s.pair_stride);  // one term, for Halide's AMX matcher
    s.shifted_pairs.update()
        .split(s.pair, channel_pair, parity, 2, TailStrategy::RoundUp)
        .reorder(parity, channel_pair, s.pair_rows.x, s.pair_rows.y, s.pair_rows.z, s.pair_rows.w)
        .allow_race_conditions()  // each row of the update writes its own row q
        .parallel(s.pair_rows.w)
        .vectorize(channel_pair, channel_lanes, tail)
        .unroll(parity);

    s.output.parallel(s.row);

    Var co("co"), ro("ro"), ci("ci"), ri("ri");
    s.total.compute_root().vectorize(s.c, lanes, tail).parallel(s.row);
    s.total.update()
        .split(s.row, ro, ri, kTileRows, TailStrategy::RoundUp)
        .reorder(s.c, ri, s.kw, s.kh, ro, s.blocks.x, s.blocks.y)
        .parallel(ro)
        .vectorize(s.c, lanes, tail);

    // The row tile's block sums, every tap and channel tile, made tile by tile.
    s.block_sums.compute_at(s.total, ro)
        .tile(s.c, s.row, co, ro, ci, ri, kTileColumns, kTileRows, TailStrategy::RoundUp)
        .reorder(ci, ri, co, s.kw, s.kh, ro)
        .vectorize(ci)
        .vectorize(ri);

    schedule_amx_accumulator(s.sums, s.block_sums, co, s.c, s.row, kTileColumns, kTileRows, s.r.x,
                             {s.r.y, s.c, s.row, s.kw, s.kh, s.band, s.b});
}

}  // namespace smoe
