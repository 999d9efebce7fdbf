// What the weight gradient's tap-tiles and expert-groups formulations share: a register tile of a
// row of taps x a block of channel vectors, band partial sums in channel blocks, and the layouts
// of their operands.
#pragma once

#include <vector>

#include "Halide.h"
#include "knobs.h"

namespace smoe {

// Taps along kw in one register tile: a K = 3 row (every benchmark layer), a 5 or 7 in passes.
constexpr int kTileTaps = 3;
// Channel vectors per block by default, on AVX-512 and AVX2 alike (tap tiles, expert groups and
// slot sweeps).
constexpr int kTileChannelVectors = 4;

struct WeightTile {
    int lanes;
    int channel_vectors;  // knob channel_vectors; default kTileChannelVectors
    int block;            // channels per tile: lanes x channel_vectors
};
WeightTile weight_tile(const Knobs &knobs, const Halide::Target &target, const Halide::Type &type);

// The band partial sums (kw, kh, c, row, band), compute_root, zeroed per band in parallel; their
// update split into channel blocks (outermost in a band) and rows of kTileTaps taps, looping
// `middle` (innermost first) between the taps and the blocks. Sets `block` and `taps` to the
// loops the operands and the tile are computed at.
void schedule_band_blocks(Halide::Func partial, const WeightTile &tile, Halide::Var c, Halide::Var kw, Halide::Var kh,
                          Halide::Var row, Halide::Var band, const std::vector<Halide::VarOrRVar> &middle,
                          Halide::Var &block, Halide::Var &taps);

// The register tile `tile` (kw, kh, c, ...) of kTileTaps taps x a block of channels, computed at
// `at` in fixed-size storage; its update's loops innermost first from `order`.
void schedule_register_tile(Halide::Func tile, const WeightTile &layout, Halide::Var c, Halide::Var kw,
                            const Halide::LoopLevel &at, const std::vector<Halide::VarOrRVar> &order);

// dŷ (w, h, jf, b) once per call, samples innermost: a (pixel, slot)'s batch is one contiguous run.
// Transposed in tiles of `samples` samples x a vector of pixels where `whole_tiles` holds (the
// computed samples are a whole number of tiles) and the grid width `width` fills a vector.
void schedule_samples_innermost(Halide::Func gated, int lanes, int samples, const Halide::Expr &whole_tiles,
                                const Halide::Expr &width);

// The input (w, h, c, b) of a channel block, channel-innermost with the samples next, at `at`.
void schedule_block_input(Halide::Func input, const Halide::LoopLevel &at, int lanes);

// The bands summed in order (total) and the output, vectorised over channels, parallel over rows.
void schedule_band_sum(Halide::Func total, Halide::Func output, Halide::Var c, Halide::Var kw, Halide::Var kh,
                       Halide::Var row, Halide::RVar t, int lanes);

}  // namespace smoe
