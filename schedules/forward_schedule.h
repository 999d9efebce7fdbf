// How the forward generator runs: the stages the schedules decide about, the knobs, and the entry.
#pragma once

#include "Halide.h"
#include "knobs.h"

namespace smoe {

// The Funcs of generators/forward_generator.cpp that a schedule makes decisions about.
struct ForwardStages {
    Halide::Func input;       // x with zero padding outside the grid, (w, h, c, b)
    Halide::Func bank;        // the weight bank, (kw, kh, c, expert·F + f)
    Halide::Func expert_row;  // weight row of each output channel, (w, h, jf[, b])
    Halide::Func tap_weight;  // bank(kw, kh, c, expert_row(w, h, jf[, b])), (kw, kh, c, w, h, jf[, b])
    Halide::Func response;    // ungated expert response, a reduction over r
    Halide::Func output;      // y, (w, h, jf, b)
    Halide::Var w, h, jf, b;
    Halide::RDom r;           // (kw, kh, c), or (kw, kh, block of 32 channels, channel) with bf16_pairs
    bool shared_routing;
    bool bf16_pairs;          // input and bank hold bfloat16; products of channel pairs are summed together
    Halide::Expr batch, out_channels, width;  // run-time extents, for specialisations
};

// The Funcs of the forward generator's union_tiles algorithm (shared routing, CPU).
struct UnionTileStages {
    Halide::Func input;           // x with zero padding outside the grid, (w, h, c, b)
    Halide::Func bank;            // the weight bank, (kw, kh, c, expert·F + f)
    Halide::Func uses;            // 1 where a tile's pixels select an expert, (e, tx, ty)
    Halide::Func position;        // an expert's place in its tile's union, (e, tx, ty): a running count
    Halide::Func members;         // the union's experts in order, (i, tx, ty)
    Halide::Func blocks;          // blocks of rows the union fills, (tx, ty)
    Halide::Func block_response;  // one block's rows at a tile's pixels, (wi, hi, ui, block, tx, ty, b)
    Halide::Func union_response;  // the filled blocks' rows, (wi, hi, bank row, tx, ty, b); updated over `filled`
    Halide::Func output;          // y, (w, h, jf, b)
    Halide::Var w, h, jf, b, wi, hi, tx, ty, e;
    Halide::RVar filled_row, filled;  // union_response's update: a block's row, the blocks (guarded by `blocks`)
    Halide::RDom r;               // (kw, kh, c)
    Halide::Expr out_per_expert;  // F
    int tile_width, tile_height, block_rows;
};

void schedule_forward(ForwardStages &stages, const Knobs &knobs, const Halide::Target &target);
void schedule_forward_union_tiles(UnionTileStages &stages, const Halide::Target &target);
void schedule_forward_cpu(ForwardStages &stages, const Knobs &knobs, const Halide::Target &target);
void schedule_forward_gpu(ForwardStages &stages, const Knobs &knobs, const Halide::Target &target);

}  // namespace smoe
