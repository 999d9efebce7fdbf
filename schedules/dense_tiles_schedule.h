// How the dense_tiles algorithms run (bfloat16 on AMX tiles, shared routing): the forward's, one
// matrix product per strip of pixels of a grid row; the data gradient's, one per grid row with the
// channels as the result's rows; and the weight gradient's, one per tap whose depth is every pixel.
#pragma once

#include "Halide.h"
#include "dense_tiles.h"  // the AMX tile's shape, whole_tiles, RowLayout

namespace smoe {

// The Funcs of the forward's dense_tiles algorithm (generators/forward_generator.cpp) that its
// schedule makes decisions about.
struct DenseTileStages {
    Halide::Func rows_last;   // the input re-laid out channels innermost, zero-padded: (c, w, h, b)
    Halide::Func strip;       // each pixel's receptive field in rows_last as one zero-padded row, (k, w, h, b)
    Halide::Func bank_pairs;  // the bank's columns in AMX's pairs layout, (column · 2 + k % 2, k / 2)
    Halide::Func dense;       // the product at every pixel, (n, w, h, b): a reduction over r
    Halide::Func dense_rows;  // dense, stored where the output reads it
    Halide::Func output;      // (w, h, channel, b)
    Halide::Var w, h, channel, b, n, k, pair;
    Halide::RVar r;           // over the padded depth of the receptive field
    Halide::Expr pair_stride; // bank_pairs' row stride: one term, for Halide's AMX matcher
};

// The Funcs of the data gradient's dense_tiles algorithm (generators/backward_data_generator.cpp).
struct DataGradientTileStages {
    Halide::Func grid_error;     // dŷ of every bank row on the grid, (row % 2, w, row / 2, h, b): zero, then
                                 // a scatter over the selected slots (an update)
    Halide::Func error_pairs;    // grid_error padded with zeros around the grid
    Halide::Func strip_pairs;    // per strip of pixels, the receptive fields in AMX's pairs layout,
                                 // (w · 2 + k % 2, k / 2, h, b)
    Halide::Func channel_rows;   // the bank, one row of the receptive field's depth per input channel, (k, c)
    Halide::Func dense;          // the product, (w, c, h, b): a reduction over r
    Halide::Func dense_rows;     // dense, stored where the output reads it
    Halide::Func output;         // grad_x, (w, h, c, b)
    Halide::Var w, h, c, b, pair, kq;
    Halide::RVar r;              // over the padded depth of the receptive field
    Halide::RVar slot;           // grid_error's scatter
    Halide::ImageParam scattered;  // dŷ, which the scatter reads
    Halide::Expr channels;       // C: channel_rows is zero past them, and computed over whole tiles
};

// The Funcs of the weight gradient's dense_tiles algorithm (generators/backward_weight_generator.cpp).
struct WeightTileStages {
    Halide::Func grid_error;     // dŷ of every bank row on the grid, (w, row, h, b): zero, then a scatter
                                 // over the selected slots (an update)
    Halide::Func row_error;      // grid_error, the grid padded with zeros to whole chunks and bands
    Halide::ImageParam scattered;  // dŷ, which grid_error's scatter reads
    Halide::Func channels_last;  // the input with zero padding, (c, w, h, b)
    Halide::Func shifted_pairs;  // channels_last in AMX's pairs layout, (c · 2 + w % 2, q): one row q per sample,
                                 // padded grid row, parity of the tap's shift and pair of pixels; written by an
                                 // update over pair_rows
    Halide::Func sums;           // one block's sum per tap, (c, row, kw, kh, band, b): a reduction over r
    Halide::Func block_sums;     // sums, stored where total reads it
    Halide::Func total;          // the blocks' sums added in order, (c, row, kw, kh): a reduction over blocks
    Halide::Func output;         // grad_weight, (kw, kh, c, row)
    Halide::Var kw, kh, c, row, w, h, b, pair, q, band;
    Halide::RVar slot;           // row_error's scatter
    Halide::RDom r;              // a block's pixels: (padded w, row of the band)
    Halide::RDom blocks;         // (band, b)
    Halide::RDom pair_rows;      // shifted_pairs' rows: (pair of pixels, parity, padded grid row, b)
    Halide::Expr pair_stride;    // shifted_pairs' row stride: one term, for Halide's AMX matcher
    Halide::Expr rows;           // NE·F: row_error is zero past them, and computed over whole tiles
};

// The forward's and the data gradient's tasks: windows of kWindowRows grid rows of a sample, so that
// what each re-lays out for its window's rows and the kernel's reach stays in L2 (laid out once for
// the whole grid it went through memory). 16, not a whole grid: a grid of 32 rows still gives one
// sample two tasks. `output`'s loops must have h just inside b; `window_row` and `task` name the
// loops made.
constexpr int kWindowRows = 16;
void split_into_windows(Halide::Func output, const Halide::Var &h, const Halide::Var &b, const Halide::Var &window_row,
                        const Halide::Var &task);

// A tile product's operand whose rows `rows` the tiles read past its `count` real ones (zeros, by
// its definition): computed over whole tiles, so that no tile reads rows allocated but never written.
void compute_whole_tiles(Halide::Func operand, const Halide::Var &rows, const Halide::Expr &count);

// An AMX tile accumulator `tile`: zero, then an update summing bfloat16 products over `depth`,
// computed at `at`'s loop `at_var` and stored in an AMX tile of `columns` x `rows` (column
// innermost). kTileDepth values of `depth` per tdpbf16ps; `outer` lists the update's remaining
// loops, innermost first. Halide's AMX matcher takes constant 2-D tiles only.
void schedule_amx_accumulator(Halide::Func tile, Halide::Func at, const Halide::Var &at_var, const Halide::Var &column,
                              const Halide::Var &row, int columns, int rows, const Halide::RVar &depth,
                              const std::vector<Halide::VarOrRVar> &outer);

void schedule_forward_dense_tiles(DenseTileStages &stages, const Halide::Target &target);
void schedule_backward_data_dense_tiles(DataGradientTileStages &stages, const Halide::Target &target);
// Both gradients' scatter of dŷ onto every bank row (grid_error, computed per loop `grid_row` of
// `padded`) and its copy into their padded layout, each vectorised along its pixels (with the
// pair's two rows, where `layout` interleaves them); `scattered` is the dŷ input, `w` the pixels of
// the scatter's update. Where `padded` is computed is the caller's decision.
void schedule_scatter_onto_rows(Halide::Func padded, Halide::Func grid_error, RowLayout layout,
                                const Halide::ImageParam &scattered, const Halide::Var &grid_row,
                                const Halide::Var &w, const Halide::RVar &slot, int lanes);

void schedule_backward_weight_dense_tiles(WeightTileStages &stages, const Halide::Target &target);

}  // namespace smoe
