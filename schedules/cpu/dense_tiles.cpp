// CPU schedule of the forward's dense_tiles algorithm (bfloat16 on AMX tiles; generator parameter
// dense_tiles=true, avx512_sapphirerapids targets), and the pieces the gradients share: the AMX
// accumulator, the tasks' windows of grid rows and the scatter of dŷ.
//
// - The tasks are windows of grid rows of a sample (split_into_windows). Per window the input is
//   re-laid out channels innermost (rows_last) for its rows and the kernel's reach, so that each
//   chunk of a pixel's receptive field (one tap, a block of 32 channels) is contiguous.
// - The output runs in strips of kPixels pixels of one grid row. Per strip the pixels' receptive
//   fields are copied into one row each (strip), in L1; dense_rows then holds the product's
//   columns at the strip's pixels, [columns x kPixels] in float32, and each output channel reads
//   its expert's row there, a vector along the strip.
// - dense_rows is made tile by tile: an AMX tile accumulates kTileRows columns x kPixels pixels
//   over the padded depth, kTileDepth bfloat16 values per step (one tdpbf16ps of 16 x 32 by 32 x 16).
//   The columns are rounded up to whole tiles (the padded bank columns are zero), so that every
//   tile is whole: Halide's AMX matcher takes constant 2-D tiles only.
// - The bank is re-laid out in AMX's pairs layout once per call (bank_pairs), each pair row on
//   whole cache lines (pairs_row_stride).
#include "dense_tiles_schedule.h"

#include "channels_innermost.h"

namespace smoe {

using namespace Halide;

void schedule_forward_dense_tiles(DenseTileStages &s, const Target &target) {
    constexpr int kPixels = kTileColumns;  // a strip's pixels: the result tile's columns
    const int lanes = target.natural_vector_size(Float(32));
    Var task("task"), window_row("window_row"), wo("wo"), wi("wi");
    s.output.split(s.w, wo, wi, kPixels, TailStrategy::GuardWithIf).reorder(wi, s.channel, wo, s.h, s.b).vectorize(wi);
    split_into_windows(s.output, s.h, s.b, window_row, task);

    // The bank's pairs (590 KiB at weatherbench) in blocks of 64 pair rows over the threads: on
    // one thread they took 0.3-1.2 ms of the 9 ms forward (JIT profile, Intel Xeon).
    s.bank_pairs.compute_root()
        .bound_storage(s.pair, s.pair_stride)
        .parallel(s.bank_pairs.args()[1], 64, TailStrategy::GuardWithIf)
        .vectorize(s.pair, lanes, TailStrategy::GuardWithIf);

    Var kc("kc"), ki("ki");
    // The strip's and the product's buffers are allocated once per task, not per strip (2050 heap
    // allocations per call at weatherbench otherwise).
    s.strip.compute_at(s.output, wo)
        .hoist_storage(s.output, task)
        .split(s.k, kc, ki, kTileDepth)
        .reorder(ki, s.w, kc)
        .vectorize(ki);

    Var ro("ro"), ri("ri"), po("po"), pi("pi");
    s.dense_rows.compute_at(s.output, wo)
        .hoist_storage(s.output, task)
        .tile(s.n, s.w, ro, po, ri, pi, kTileRows, kPixels, TailStrategy::RoundUp)
        .reorder(ri, pi, ro, po)
        .vectorize(ri)
        .vectorize(pi);

    schedule_amx_accumulator(s.dense, s.dense_rows, ro, s.n, s.w, kTileRows, kPixels, s.r, {s.n, s.w, s.h, s.b});

    // The input channels innermost per task, for its rows and the kernel's reach (a window of
    // weatherbench: 18 rows, 295 KiB), in L2 while the window's strips copy from it; once for the
    // whole input it went through memory (JIT, Intel Xeon family 6 model 167: weatherbench 7.3-7.4
    // against 7.9 ms, cifar 5.4-5.7 against 6.3-6.5).
    s.rows_last.compute_at(s.output, task);
    schedule_channels_innermost_copy(s.rows_last, s.rows_last.args()[0], s.w,
                                     target.natural_vector_size(s.rows_last.type()), lanes, {s.h, s.b});
}

void split_into_windows(Func output, const Var &h, const Var &b, const Var &window_row, const Var &task) {
    const Var windows("windows");
    output.split(h, windows, window_row, kWindowRows, TailStrategy::GuardWithIf).fuse(windows, b, task).parallel(task);
}

void compute_whole_tiles(Func operand, const Var &rows, const Expr &count) {
    operand.bound(rows, 0, whole_tiles(count));
}

void schedule_amx_accumulator(Func tile, Func at, const Var &at_var, const Var &column, const Var &row, int columns,
                              int rows, const RVar &depth, const std::vector<VarOrRVar> &outer) {
    Var zc("zc"), zr("zr"), tc("tc"), tr("tr");
    RVar chunk("chunk"), chunk_value("chunk_value");
    tile.compute_at(at, at_var)
        .store_in(MemoryType::AMXTile)
        .tile(column, row, zc, zr, columns, rows)
        .vectorize(zc)
        .vectorize(zr);
    std::vector<VarOrRVar> order = {chunk_value, tc, tr, chunk};
    order.insert(order.end(), outer.begin(), outer.end());
    tile.update()
        .tile(column, row, tc, tr, columns, rows, TailStrategy::GuardWithIf)
        .split(depth, chunk, chunk_value, kTileDepth)
        .reorder(order)
        .atomic()
        .vectorize(chunk_value)
        .vectorize(tc)
        .vectorize(tr);
}

// Per grid row, the scatter in L1, then its copy into the padded layout. Each slot's dŷ is a line
// of its own plane, more streams than the hardware prefetcher follows: they are requested 8 slots
// ahead, and each grid row reads its planes on.
void schedule_scatter_onto_rows(Func padded, Func grid_error, RowLayout layout, const ImageParam &scattered,
                                const Var &grid_row, const Var &w, const RVar &slot, int lanes) {
    const TailStrategy tail = TailStrategy::GuardWithIf;
    // A vector of pixels, or of pixels and their pair of rows (RowLayout::RowPairs: parity first).
    auto vectorize_pixels = [&](Func f) {
        if (layout == RowLayout::RowPairs) {
            const Var parity = f.args()[0];
            f.bound(parity, 0, 2).vectorize(parity).vectorize(f.args()[1], lanes, tail);
        } else {
            f.vectorize(f.args()[0], lanes, tail);
        }
    };
    vectorize_pixels(padded);
    grid_error.compute_at(padded, grid_row);
    vectorize_pixels(grid_error);
    grid_error.update()
        .reorder(w, slot)
        .vectorize(w, lanes, tail)
        .prefetch(scattered, slot, slot, 8, PrefetchBoundStrategy::NonFaulting);
}

}  // namespace smoe
