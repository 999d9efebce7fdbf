// CPU schedule of the data gradient's dense_tiles algorithm (bfloat16 on AMX tiles; generator
// parameter dense_tiles=true, avx512_sapphirerapids targets).
//
// - The tasks are windows of grid rows of a sample. Per window, dŷ is scattered onto every bank
//   row for the window's rows and the kernel's reach around them, pixels innermost with each two
//   rows interleaved: per grid row, zeros, then per slot a vector of pixels read in order
//   (grid_error, in L1), then copied into the layout padded around the grid (error_pairs, in L2;
//   schedule_scatter_onto_rows). The bank is re-laid out once, a row of the receptive field's depth
//   per input channel (channel_rows).
// - Per grid row, dense_rows holds the product [channels x pixels] in float32, made tile by tile:
//   a tile of kTileRows channels x kTileColumns pixels accumulates over the padded depth on one
//   AMX tile, kTileDepth bfloat16 values per step (one tdpbf16ps of 16 x 32 by 32 x 16). Per strip
//   of kStripPixels pixels (two tiles' columns) the right operand is copied first (strip_pairs, 32
//   pixels x 2 values of each pair row, one contiguous run of error_pairs per row), in L2 across
//   the strip's channel tiles. Its rows are 128 bytes, whole cache lines, and each tile reads one
//   half of every row.
// - grad_x's rows are then dense_rows' rows: a vector of pixels per channel, no transposition
//   (the earlier order, pixels x channels, spent a third of the kernel transposing its tiles).
// - Channels are rounded up to whole tiles and the strip to whole pixels (the padding reads zeros):
//   Halide's AMX matcher takes constant 2-D tiles only.
#include "dense_tiles_schedule.h"

namespace smoe {

using namespace Halide;

void schedule_backward_data_dense_tiles(DataGradientTileStages &s, const Target &target) {
    constexpr int kStripPixels = 2 * kTileColumns;  // two tiles of the result's columns
    const int lanes = target.natural_vector_size(Float(32));
    const int value_lanes = target.natural_vector_size(BFloat(16));
    const TailStrategy tail = TailStrategy::GuardWithIf;
    Var window_row("window_row"), task("task");
    s.channel_rows.compute_root().parallel(s.c).vectorize(s.channel_rows.args()[0], value_lanes, tail);
    compute_whole_tiles(s.channel_rows, s.c, s.channels);

    s.output.reorder(s.w, s.c, s.h, s.b).vectorize(s.w, lanes, tail);
    split_into_windows(s.output, s.h, s.b, window_row, task);
    // Per task, dŷ's pairs for its rows and the kernel's reach (a window of weatherbench: 18 rows,
    // 600 KiB); for the whole grid at once (9 MB) they were read back from memory (JIT, Intel Xeon
    // family 6 model 167: weatherbench 10.6-10.7 against 12.0-12.2 ms, cifar 8.1-8.2 against 9.3).
    s.error_pairs.compute_at(s.output, task);
    schedule_scatter_onto_rows(s.error_pairs, s.grid_error, RowLayout::RowPairs, s.scattered, s.h, s.w, s.slot, lanes);

    Var wt("wt"), ct("ct"), wh("wh"), wi("wi"), ci("ci");
    s.dense_rows.compute_at(s.output, window_row)
        .tile(s.w, s.c, wt, ct, wi, ci, kStripPixels, kTileRows, TailStrategy::RoundUp)
        .split(wi, wh, wi, kTileColumns)
        .reorder(wi, ci, wh, ct, wt)
        .vectorize(wi)
        .vectorize(ci);

    // A pair row's 32 pixels x 2 values: one 128-byte run, so that every tile row is one aligned
    // 64-byte load. Strips of 16 pixels, rows of 64 bytes one pair apart (a row exactly a tile's is
    // merged by Halide into one ramp, which its AMX matcher rejects), split most tile rows across
    // two cache lines (JIT, Intel Xeon family 6 model 167: weatherbench 10.1-10.4 against 9.7, cifar
    // 7.4-7.7 against 6.6). The pair rows in chunks of one tile's depth, each one tap and block of
    // bank rows, so that the tap's offsets (divisions by the symbolic kernel size) are worked out
    // once per chunk.
    Var pixel("pixel"), parity("parity"), chunk("chunk"), chunk_row("chunk_row");
    s.strip_pairs.compute_at(s.dense_rows, wt)
        .hoist_storage(s.output, task)
        .bound_storage(s.pair, 2 * kStripPixels)
        .split(s.pair, pixel, parity, 2, TailStrategy::RoundUp)
        .split(s.kq, chunk, chunk_row, kTileDepth / 2, TailStrategy::RoundUp)
        .reorder(parity, pixel, chunk_row, chunk)
        .vectorize(parity)
        .vectorize(pixel);

    schedule_amx_accumulator(s.dense, s.dense_rows, wh, s.w, s.c, kTileColumns, kTileRows, s.r, {s.w, s.c, s.h, s.b});
}

}  // namespace smoe
