// How the backward-weight generator runs: its stages, knobs and schedule entry points.
#pragma once

#include "Halide.h"
#include "expert_lists.h"
#include "knobs.h"

namespace smoe {

// The Funcs of generators/backward_weight_generator.cpp that a schedule makes decisions about.
struct BackwardWeightStages {
    Halide::Func input;         // x with zero padding, (w, h, c, b)
    Halide::Func gated;         // dŷ, (w, h, jf, b)
    Halide::Func contribution;  // (kw, kh, c, w, h, jf[, b]); shared routing: a reduction over rb
    Halide::Func partial;       // (kw, kh, c, row, band); update scatters over p
    Halide::Func total;         // (kw, kh, c, row); update sums the bands in order over t
    Halide::Func output;        // grad_weight, (kw, kh, c, row)
    Halide::Var kw, kh, c, row, band, w, h, jf, b;
    Halide::RDom rb, p, t;
    bool shared_routing;
    // Run-time extents, for specialisations: C, K, B, W.
    Halide::Expr channels, kernel_size, batch, width;
};

// The expert-major order over groups of pixels (generators/backward_weight_generator.cpp,
// group_pixels > 0, shared routing).
struct ExpertGroupStages {
    Halide::Func input;         // x with zero padding, (w, h, c, b)
    Halide::Func gated;         // dŷ, (w, h, jf, b)
    ExpertLists lists;          // the inverse of the routing per group (generators/expert_lists.h)
    Halide::Func entry_place;   // (j, i, g, h): the list entry of slot j at pixel i of group g
    Halide::Func group_pixel;   // (k, g, h): the group's list of pixels; update scatters over pick
    Halide::Func group_error;   // (b, f, k, g, h): their dŷ; update scatters over entry
    Halide::Func contribution;  // (kw, kh, c, row, g, h): a reduction over r = (the group's pixels, samples)
    Halide::Func partial;       // (kw, kh, c, row, band); update over rg = (g, row in band)
    Halide::Func total;         // (kw, kh, c, row); update sums the bands in order over t
    Halide::Func output;        // grad_weight, (kw, kh, c, row)
    Halide::Var kw, kh, c, row, band, g, j, h, b;
    Halide::RDom r, rg, t;
    Halide::RDom pick;   // the pixel lists' scatter, over (slot, pixel of the group)
    Halide::RDom entry;  // the dŷ lists' scatter, over (f, slot, pixel of the group)
    // Run-time extents, for specialisations: F, B, W.
    Halide::Expr out_per_expert, batch, width;
};

// The dense order (generators/backward_weight_generator.cpp, dense_rows=true, shared routing):
// every expert row over every pixel, dŷ zero where the pixel does not select the expert.
struct DenseRowStages {
    Halide::Func gated;          // dŷ, damped and gated, (w, h, jf, b)
    Halide::Func row_error;      // (row, w, h, b): dŷ of the row's expert at the pixel, or 0; update over the slots
    Halide::Func channels_last;  // x with zero padding, (c, w, h, b)
    Halide::Func total;          // (kw, kh, c, row); update sums over r = (w, h, b)
    Halide::Func output;         // grad_weight, (kw, kh, c, row)
    Halide::Var kw, kh, c, row, w, h, b;
    Halide::RDom slots, r;
    // Run-time extents, for specialisations: C, NE·F, the grid's width, the kernel's size.
    Halide::Expr channels, rows, width, kernel;
};
void schedule_dense_rows(DenseRowStages &stages, const Knobs &knobs, const Halide::Target &target);
// The same sums with masked_rows=true, vectorised along the grid's rows (schedules/cpu/masked_rows.cpp).
void schedule_masked_rows(DenseRowStages &stages, const Halide::Target &target);

// The slot sweeps (generators/backward_weight_generator.cpp, shared routing, knob formulation=2):
// pixel-major in blocks of samples.
constexpr int kSlotSweeps = 2;
struct SlotSweepStages {
    Halide::Func input;         // x widened, zero past the grid and the batch, (w, h, c, b); none with bf16_pairs
    Halide::Func gated;         // dŷ, zero past the batch, (w, h, jf, b); bfloat16 with bf16_pairs
    Halide::Func input_pairs;   // bf16_pairs only: bfloat16 x, (member, c, w, h, pair), sample = 2 pair + member
    Halide::Func contribution;  // (kw, kh, c, w, h, jf, block): a reduction over the block's samples; none into_rows
    Halide::Func partial;       // (kw, kh, c, row, band); update scatters over p = (slot, w, row in band, block[, sample])
    Halide::Func total;         // (kw, kh, c, row); update sums the bands in order over t
    Halide::Func output;        // grad_weight, (kw, kh, c, row)
    Halide::Var kw, kh, c, row, band, w, h, jf, b, block;
    // The block's samples (sample), or with bf16_pairs (member, pair).
    Halide::RDom samples, p, t;
    // Run-time extents, for specialisations: C, F, W.
    Halide::Expr channels, out_per_expert, width;
    int block_samples;          // samples per block
    bool bf16_pairs;
    bool into_rows;             // each sample's product added straight to the row (p's fifth dimension)
};
// Samples per block of the slot sweeps: the knob sample_block, else 8.
int slot_sweep_samples(const Knobs &knobs);
// Whether the slot sweeps add each sample's product straight to the row (knob sum_into_rows).
bool slot_sweeps_sum_into_rows(const Knobs &knobs, bool bf16_pairs, const Halide::Target &target);
void schedule_slot_sweeps(SlotSweepStages &stages, const Knobs &knobs, const Halide::Target &target);

void schedule_backward_weight(BackwardWeightStages &stages, const Knobs &knobs,
                              const Halide::Target &target);
void schedule_expert_groups(ExpertGroupStages &stages, const Knobs &knobs, const Halide::Target &target);
void schedule_backward_weight_cpu(BackwardWeightStages &stages, const Knobs &knobs,
                                  const Halide::Target &target);
void schedule_backward_weight_gpu(BackwardWeightStages &stages, const Knobs &knobs,
                                  const Halide::Target &target);

}  // namespace smoe
