// Spatial MoE backward, weight side (DESIGN.md §4 "Backward, expert side"):
//   grad_weight[e·F+f, c, kh, kw] = Σ over (b, h, w, j) with idx(j,h,w) = e of
//                                   dŷ[b, j·F+f, h, w] · x[b, c, h+kh−P, w+kw−P]
// with dŷ = dy damped at misrouted elements (DESIGN.md §4 "Damping"; δ = 1 turns it off), times
// the routing score when weighted.
//
// Deterministic by construction: the grid is cut into bands of `band_rows` rows; each band sums
// its pixels into a private copy of the gradient in a fixed order, then the bands are added in
// band order. The result depends on band_rows, never on how many threads run the bands.
//
// Three orders of the band's sum: pixel-major, each pixel's contribution (summed over the batch)
// added to the rows of its selected experts; with shared routing and the slot-sweeps formulation
// (knob formulation=2), pixel-major in blocks of samples (the batch zero-padded to whole blocks),
// each block's contribution added to the row; or, with shared routing and `group_pixels` > 0,
// expert-major over groups of `group_pixels` neighbouring pixels of a row: per group and expert,
// the group's pixels that select the expert (an inverse of the routing, computed here) are summed
// first, then added to the expert's row once. Larger batches may take shorter groups
// (`batched_group_pixels`), so that a group's receptive fields stay in L1.
//
// bf16_pairs (bfloat16 slot sweeps on CPUs with bf16 dot products): the block's samples are summed
// in pairs, each pair's two bfloat16 products added in one step (vdpbf16ps). dŷ is rounded to
// bfloat16 after damping and gating (exact when neither changes it), the products are exact, and
// the instruction reads denormal operands as zero.
#include "Halide.h"

#include "backward_weight_schedule.h"
#include "dense_tiles.h"
#include "dense_tiles_schedule.h"
#include "error_signal.h"
#include "expert_lists.h"
#include "precision.h"

namespace smoe {
namespace {

using namespace Halide;

class SpatialMoEBackwardWeight : public Generator<SpatialMoEBackwardWeight> {
public:
    GeneratorParam<Type> dtype{"dtype", Float(32)};
    // Schedule knobs, "name:value,..." (schedules/knobs.h), applied to `knobs_target` only when set.
    GeneratorParam<std::string> knobs{"knobs", ""};
    GeneratorParam<std::string> knobs_target{"knobs_target", ""};
    GeneratorParam<bool> shared_routing{"shared_routing", true};
    GeneratorParam<bool> weighted{"weighted", false};
    GeneratorParam<int> band_rows{"band_rows", 4};   // rows per partial sum (summation order)
    GeneratorParam<int> group_pixels{"group_pixels", 0};  // 0: pixel-major; else expert-major (shared routing)
    // Expert-major: the groups of batches of kBatchedGroupSamples samples or more (0: group_pixels).
    GeneratorParam<int> batched_group_pixels{"batched_group_pixels", 0};
    GeneratorParam<bool> bf16_pairs{"bf16_pairs", false};  // slot sweeps summing sample pairs (bfloat16, CPU)
    GeneratorParam<bool> dense_rows{"dense_rows", false};  // every expert row over every pixel (shared routing, CPU)
    // With dense_rows: each expert row's dŷ chosen at every pixel by comparing the routing with the
    // row (each pixel's slots tested once per row), a pure function of the pixel that can run along
    // the grid's rows; for layers with few experts and slots (heat), summed along the grid's rows.
    GeneratorParam<bool> masked_rows{"masked_rows", false};
    // bfloat16 only, CPU targets with AMX tiles (avx512_sapphirerapids), shared routing: the dense
    // order on the tiles, per tap [NE·F x pixels] x [pixels x C], NE/E times the products of the
    // selected experts alone at the tiles' rate (schedules/cpu/weight_tile_sums.cpp).
    GeneratorParam<bool> dense_tiles{"dense_tiles", false};

    GeneratorInput<Buffer<>> *grad_y = nullptr;          // (w, h, j·F + f, b)
    GeneratorInput<Buffer<>> *x = nullptr;               // (w, h, c, b)
    GeneratorInput<Buffer<int32_t>> *indices = nullptr;  // (w, h, j) or (w, h, j, b)
    GeneratorInput<Buffer<>> *values = nullptr;          // like indices; only when weighted
    GeneratorInput<int32_t> *out_per_expert = nullptr;   // F
    GeneratorInput<Buffer<>> *quantile = nullptr;        // Q_b(dy), (b), for damping
    GeneratorInput<double> *error_scale = nullptr;       // s
    GeneratorInput<double> *damping = nullptr;           // δ; 1 = no damping
    GeneratorOutput<Buffer<>> *grad_weight = nullptr;    // (kw, kh, c, expert·F + f)

    void configure() {
        const int routing_dims = shared_routing ? 3 : 4;
        grad_y = add_input<Buffer<>>("grad_y", dtype, 4);
        x = add_input<Buffer<>>("x", dtype, 4);
        indices = add_input<Buffer<int32_t>>("indices", routing_dims);
        if (weighted) values = add_input<Buffer<>>("values", dtype, routing_dims);
        out_per_expert = add_input<int32_t>("F");
        quantile = add_input<Buffer<>>("quantile", compute_type_of(dtype), 1);
        error_scale = add_input<double>("error_scale");
        damping = add_input<double>("damping");
        grad_weight = add_output<Buffer<>>("grad_weight", dtype, 4);
    }

    void generate() {
        Var w("w"), h("h"), c("c"), b("b"), jf("jf"), kw("kw"), kh("kh"), row("row"), band("band");
        const auto [F, width, height, batch, slots, selected, K, pad, experts] = extents();
        Expr bands = (height + band_rows - 1) / band_rows;
        const Type value_type = compute_type_of(dtype);

        Func input = BoundaryConditions::constant_exterior(
            widened(*x, value_type, "x_values"), cast(value_type, 0), {{0, width}, {0, height}, {Expr(), Expr()}, {Expr(), Expr()}});

        Func gated("gated");
        Expr gate = cast(value_type, 1);
        if (weighted) gate = widen(shared_routing ? (*values)(w, h, jf / F) : (*values)(w, h, jf / F, b), value_type);
        Expr error = damped_error(widen((*grad_y)(w, h, jf, b), value_type), (*quantile)(b), *error_scale, *damping);
        gated(w, h, jf, b) = weighted ? error * gate : error;

        if (batched_group_pixels > 0 && group_pixels <= 0) {
            throw CompileError("smoe_backward_weight: batched_group_pixels needs group_pixels > 0");
        }
        if (dense_tiles) {
            if (dtype != BFloat(16) || !shared_routing || dense_rows || group_pixels > 0 || bf16_pairs ||
                !get_target().has_feature(Target::AVX512_SapphireRapids)) {
                throw CompileError("smoe_backward_weight: dense_tiles=true needs dtype=bfloat16, shared routing and "
                                   "an avx512_sapphirerapids target, without dense_rows, group_pixels or bf16_pairs");
            }
            sum_on_tiles(gated);
            return;
        }
        if (masked_rows && !dense_rows) throw CompileError("smoe_backward_weight: masked_rows=true needs dense_rows=true");
        if (dense_rows) {
            if (!shared_routing || group_pixels > 0 || bf16_pairs || get_target().has_gpu_feature()) {
                throw CompileError("smoe_backward_weight: dense_rows=true needs shared routing and a CPU target, "
                                   "without group_pixels or bf16_pairs");
            }
            sum_densely(input, gated, value_type);
            return;
        }
        if (group_pixels > 0 && shared_routing) {
            sum_by_expert_groups(input, gated, bands, value_type);
            return;
        }

        // The sparse orders: each (pixel, output channel)'s row of the gradient.
        std::vector<Var> row_args = {w, h, jf};
        if (!shared_routing) row_args.push_back(b);
        std::vector<Expr> slot_args = {w, h, jf / F};
        if (!shared_routing) slot_args.push_back(b);
        Func expert_row("expert_row");
        expert_row(row_args) = clamp((*indices)(slot_args), 0, experts - 1) * F + jf % F;

        const Knobs choices("backward_weight", knobs, knobs_target, get_target());
        if (bf16_pairs && (dtype != BFloat(16) || !shared_routing || get_target().has_gpu_feature() ||
                           group_pixels > 0 || choices["formulation"] != kSlotSweeps)) {
            throw CompileError("smoe_backward_weight: bf16_pairs=true needs dtype=bfloat16, shared routing, a CPU "
                               "target and the slot sweeps (knob formulation=2)");
        }
        if (shared_routing && !get_target().has_gpu_feature() && choices["formulation"] == kSlotSweeps) {
            sum_by_slot_sweeps(gated, expert_row, bands, value_type, choices);
            return;
        }

        // What one (pixel, output channel) adds to its expert's row: with shared routing the whole
        // batch goes to the same row, so it is summed first.
        Func contribution("contribution");
        RDom rb(0, batch, "rb");
        if (shared_routing) {
            contribution(kw, kh, c, w, h, jf) = cast(value_type, 0);
            contribution(kw, kh, c, w, h, jf) += gated(w, h, jf, rb) * input(w + kw - pad, h + kh - pad, c, rb);
        } else {
            contribution(kw, kh, c, w, h, jf, b) = gated(w, h, jf, b) * input(w + kw - pad, h + kh - pad, c, b);
        }

        // Per band, its pixels scattered into the experts' rows. Rows past the grid (the last
        // band may be partial) add zero to the edge row.
        RDom p = shared_routing ? RDom(0, slots, 0, width, 0, band_rows, "p")
                                : RDom(0, slots, 0, width, 0, band_rows, 0, batch, "p");
        Expr grid_row = band * band_rows + p.z;
        Expr in_grid = grid_row < height;
        Expr clamped_row = min(grid_row, height - 1);
        std::vector<Expr> pixel_row = {p.y, clamped_row, p.x};
        std::vector<Expr> pixel_contribution = {kw, kh, c, p.y, clamped_row, p.x};
        if (!shared_routing) {
            pixel_row.push_back(p.w);
            pixel_contribution.push_back(p.w);
        }
        Func partial("partial");
        partial(kw, kh, c, row, band) = cast(value_type, 0);
        partial(kw, kh, c, expert_row(pixel_row), band) +=
            select(in_grid, contribution(pixel_contribution), cast(value_type, 0));

        RDom t(0, bands, "t");
        Func total("total");
        total(kw, kh, c, row) = cast(value_type, 0);
        total(kw, kh, c, row) += partial(kw, kh, c, row, t);
        (*grad_weight)(kw, kh, c, row) = narrow(total(kw, kh, c, row), dtype);

        BackwardWeightStages stages{input, gated, contribution, partial, total, *grad_weight, kw, kh, c, row, band,
                                    w, h, jf, b, rb, p, t, shared_routing, x->dim(2).extent(), K, batch, width};
        // Halide's autoschedulers (autotune/) schedule the pipeline themselves.
        if (!using_autoscheduler()) {
            schedule_backward_weight(stages, Knobs("backward_weight", knobs, knobs_target, get_target()), get_target());
        }
    }

private:
    // The run-time extents every order of the sum reads.
    struct Extents {
        Expr F, width, height, batch, slots, selected, K, pad, experts;
    };
    Extents extents() const {
        Expr F = *out_per_expert;
        Expr K = grad_weight->dim(0).extent();
        return {F,
                x->dim(0).extent(),
                x->dim(1).extent(),
                x->dim(3).extent(),
                grad_y->dim(2).extent(),
                grad_y->dim(2).extent() / F,
                K,
                K / 2,
                grad_weight->dim(3).extent() / F};
    }

    // The slot sweeps (shared routing): what one (pixel, slot, block of samples) adds to the slot's
    // expert row, per band, pixels in order and within a pixel the blocks in order. The batch is
    // padded with zero samples to whole blocks, so that every block has the same, fixed size.
    // Either the block's samples are summed first (`contribution`) and that sum added to the row, or
    // (knob sum_into_rows) each sample's product is added to the row in turn, samples in order.
    void sum_by_slot_sweeps(Func gated, Func expert_row, Expr bands, const Type &value_type, const Knobs &choices) {
        Var kw("kw"), kh("kh"), c("c"), row("row"), band("band"), w("w"), h("h"), jf("jf"), b("b"), block("block");
        const int samples = slot_sweep_samples(choices);
        const auto [F, width, height, batch, slots, selected, K, pad, experts] = extents();
        Expr blocks = (batch + samples - 1) / samples;
        const bool into_rows = slot_sweeps_sum_into_rows(choices, bf16_pairs, get_target());

        // Summed into the rows, the band's rows past the grid read zero dŷ instead of being selected
        // away; the sum's row is the product's.
        const Range rows_of_grid = into_rows ? Range(0, height) : Range(Expr(), Expr());
        Func padded_gated = BoundaryConditions::constant_exterior(
            gated, cast(value_type, 0), {{Expr(), Expr()}, rows_of_grid, {Expr(), Expr()}, {0, batch}});

        Func contribution("contribution");
        if (!into_rows) contribution(kw, kh, c, w, h, jf, block) = cast(value_type, 0);
        RDom rs;
        Func input, input_pairs("input_pairs"), gated_values = padded_gated;
        if (bf16_pairs) {
            if (samples % 2 != 0) throw CompileError("smoe_backward_weight: bf16_pairs needs an even sample_block");
            // Both operands stay bfloat16 until multiplied: x as it is, dŷ rounded once per call;
            // the input with each pair's two samples next to each other, channel by channel.
            Var m("m"), q("q");
            const Type bf16 = BFloat(16);
            Func x_values = BoundaryConditions::constant_exterior(
                *x, cast(bf16, 0.0f), {{0, width}, {0, height}, {0, x->dim(2).extent()}, {0, batch}});
            input_pairs(m, c, w, h, q) = x_values(w, h, c, q * 2 + m);
            gated_values = Func("gated_values");
            gated_values(w, h, jf, b) = narrow(padded_gated(w, h, jf, b), bf16);
            rs = RDom(0, 2, 0, samples / 2, "rs");
            Expr pair = block * (samples / 2) + rs.y;
            contribution(kw, kh, c, w, h, jf, block) +=
                cast(value_type, gated_values(w, h, jf, pair * 2 + rs.x)) *
                cast(value_type, input_pairs(rs.x, c, w + kw - pad, h + kh - pad, pair));
        } else {
            input = BoundaryConditions::constant_exterior(widened(*x, value_type, "x_values"), cast(value_type, 0),
                                                          {{0, width}, {0, height}, {Expr(), Expr()}, {0, batch}});
            if (!into_rows) {
                rs = RDom(0, samples, "rs");
                Expr sample = block * samples + rs;
                contribution(kw, kh, c, w, h, jf, block) +=
                    padded_gated(w, h, jf, sample) * input(w + kw - pad, h + kh - pad, c, sample);
            }
        }

        // Per band, its pixels scattered into the experts' rows. Rows past the grid (the last
        // band may be partial) add zero to the edge row.
        Func partial("partial");
        partial(kw, kh, c, row, band) = cast(value_type, 0);
        // p = (slot, w, row in band, block[, sample of the block]).
        RDom p = into_rows ? RDom({{0, slots}, {0, width}, {0, band_rows}, {0, blocks}, {0, samples}}, "p")
                           : RDom({{0, slots}, {0, width}, {0, band_rows}, {0, blocks}}, "p");
        Expr grid_row = band * band_rows + p.z;
        Expr clamped_row = min(grid_row, height - 1);
        if (into_rows) {
            Expr sample = p.w * samples + p[4];
            partial(kw, kh, c, expert_row(p.y, clamped_row, p.x), band) +=
                padded_gated(p.y, grid_row, p.x, sample) * input(p.y + kw - pad, grid_row + kh - pad, c, sample);
        } else {
            partial(kw, kh, c, expert_row(p.y, clamped_row, p.x), band) +=
                select(grid_row < height, contribution(kw, kh, c, p.y, clamped_row, p.x, p.w), cast(value_type, 0));
        }

        RDom t(0, bands, "t");
        Func total("total");
        total(kw, kh, c, row) = cast(value_type, 0);
        total(kw, kh, c, row) += partial(kw, kh, c, row, t);
        (*grad_weight)(kw, kh, c, row) = narrow(total(kw, kh, c, row), dtype);

        SlotSweepStages stages{input, gated_values, input_pairs, contribution, partial, total, *grad_weight,
                               kw,    kh,           c,           row,          band,    w,     h,
                               jf,    b,            block,       rs,           p,       t,     x->dim(2).extent(),
                               *out_per_expert,     width,       samples,      bf16_pairs, into_rows};
        if (!using_autoscheduler()) schedule_slot_sweeps(stages, choices, get_target());
    }

    // The dense order (shared routing): every expert row summed over every pixel and sample, its dŷ
    // zero where the pixel does not select the expert. Twice the products of the sparse orders at
    // NE = 2E, as in the naive path, but one matrix product with no gathered rows: per row the
    // pixels' dŷ against the receptive fields, each a contiguous block of channels.
    void sum_densely(Func input, Func gated, const Type &value_type) {
        Var kw("kw"), kh("kh"), c("c"), row("row"), w("w"), h("h"), b("b");
        const auto [F, width, height, batch, slots, selected, K, pad, experts] = extents();

        // dŷ spread to every expert row: zero, then each slot's F channels added to its expert's rows
        // (added, so that an expert selected twice at a pixel counts twice, as in the sparse orders).
        // Masked rows gather instead: every row tests every slot of the pixel, adding its dŷ or
        // zero, so the sums are the same, in the same order.
        RDom rs(0, selected * F, "rs");
        const Expr slot_row = clamp((*indices)(w, h, rs / F), 0, experts - 1) * F + rs % F;
        Func row_error("row_error");
        row_error(row, w, h, b) = cast(value_type, 0);
        if (masked_rows) {
            row_error(row, w, h, b) += select(slot_row == row, gated(w, h, rs, b), cast(value_type, 0));
        } else {
            row_error(slot_row, w, h, b) += gated(w, h, rs, b);
        }
        Func channels_last("channels_last");
        channels_last(c, w, h, b) = input(w, h, c, b);

        RDom r(0, width, 0, height, 0, batch, "r");
        Func total("total");
        total(kw, kh, c, row) = cast(value_type, 0);
        total(kw, kh, c, row) += row_error(row, r.x, r.y, r.z) * channels_last(c, r.x + kw - pad, r.y + kh - pad, r.z);
        (*grad_weight)(kw, kh, c, row) = narrow(total(kw, kh, c, row), dtype);

        DenseRowStages stages{gated, row_error, channels_last, total, *grad_weight, kw, kh, c, row, w, h, b, rs, r,
                              x->dim(2).extent(), grad_weight->dim(3).extent(), width, K};
        if (!using_autoscheduler()) {
            if (masked_rows) {
                schedule_masked_rows(stages, get_target());
            } else {
                schedule_dense_rows(stages, Knobs("backward_weight", knobs, knobs_target, get_target()), get_target());
            }
        }
    }

    // The dense order on AMX tiles (bfloat16, shared routing). Per tap, a matrix product whose
    // depth is the pixels: the left operand dŷ of every bank row, the pixels of each grid row
    // innermost and padded with zeros to whole chunks of kTileDepth (row_error, bfloat16: zero where
    // the row is not selected, each selected slot's dŷ rounded once); the right operand the input
    // shifted by each kw in AMX's pairs layout (each channel's two neighbouring pixels next to each
    // other). The pixels are summed in blocks (a band of grid rows of one sample, about
    // kBlockPixels pixels, the grid's rows padded with zeros to whole bands), each block's tile of
    // 16 channels x 16 rows on the AMX tiles, the blocks then added in order: a fixed order, whatever
    // the number of threads.
    void sum_on_tiles(Func gated) {
        // A block's operands stay in L2 (2 MB on the CPUs with AMX). Blocks of 2048 pixels (fewer
        // block sums stored and added) ran faster in JIT but not through the library
        // (bench/RESULTS.md). A band is at most the grid's height, so that a small grid is not
        // padded to a whole band of zero rows.
        constexpr int kBlockPixels = 1024;
        Var kw("kw"), kh("kh"), c("c"), row("row"), w("w"), h("h"), b("b"), pair("pair"), band("band");
        const auto [F, width, height, batch, slots, selected, K, pad, experts] = extents();
        const Expr channels = x->dim(2).extent();
        const Expr padded_width = (width + kTileDepth - 1) / kTileDepth * kTileDepth;
        const Expr band_rows = clamp(kBlockPixels / padded_width, 1, height);
        const Expr bands = (height + band_rows - 1) / band_rows;
        const Type bf16 = BFloat(16);

        // Scattered on the grid (grid_error), then copied into the padded layout (row_error).
        RDom slot(0, slots, "slot");
        Func grid_error = scatter_onto_rows(gated, *indices, slot, experts, F, RowLayout::PixelsInnermost, w, h, b);
        Func row_error("row_error");
        row_error(w, row, h, b) = select(w < width && h < height,
                                         grid_error(min(w, width - 1), row, min(h, height - 1), b), cast(bf16, 0));
        Func input = BoundaryConditions::constant_exterior(*x, cast(bf16, 0),
                                                           {{0, width}, {0, height}, {0, channels}, {0, batch}});
        // The input channel-innermost once, so that a pair row is two runs of channels interleaved.
        Func channels_last("channels_last");
        channels_last(c, w, h, b) = input(w, h, c, b);
        // The input in pairs of pixels, two copies: a tap's shift kw - pad of one parity or the other
        // (the shifts of one parity are the same pairs, whole pairs apart). Row (sample, padded grid
        // row, parity) holds pairs_per_row pairs, pair j the pixels 2j + parity - 2·lead and the
        // next. Flattened to one pair row index q: Halide's AMX matcher takes the right operand's
        // index as (pair row) * stride + pair only. Written row by row (an update over the rows), so
        // that each row's offsets are worked out once, not per pair.
        Var q("q");
        const Expr half_width = padded_width / 2, padded_height = bands * band_rows + 2 * pad;
        const Expr lead = (pad + 1) / 2, pairs_per_row = half_width + lead + pad / 2 + 1;
        Func shifted_pairs("shifted_pairs");
        shifted_pairs(pair, q) = undef(bf16);
        RDom pair_rows(0, pairs_per_row, 0, 2, 0, padded_height, 0, batch, "pair_rows");
        const Expr shifted_row = (pair_rows.w * padded_height + pair_rows.z) * 2 + pair_rows.y;
        const Expr pixel = pair_rows.x * 2 + pair % 2 + pair_rows.y - 2 * lead;
        shifted_pairs(pair, shifted_row * pairs_per_row + pair_rows.x) =
            channels_last(pair / 2, pixel, pair_rows.z - pad, pair_rows.w);

        RDom r(0, padded_width, 0, band_rows, "r");
        Expr grid_row = band * band_rows + r.y;
        const Expr shift = kw - pad, parity = (shift + 2 * lead) % 2;
        Expr pair_row = ((b * padded_height + grid_row + kh) * 2 + parity) * pairs_per_row + (shift - parity) / 2 +
                        lead + r.x / 2;
        Func sums = tile_product("sums", {c, row, kw, kh, band, b}, row_error(r.x, row, grid_row, b),
                                 shifted_pairs(c * 2 + r.x % 2, pair_row));
        Func block_sums("block_sums");
        block_sums(c, row, kw, kh, band, b) = sums(c, row, kw, kh, band, b);
        RDom blocks(0, bands, 0, batch, "blocks");
        Func total("total");
        total(c, row, kw, kh) = cast<float>(0);
        total(c, row, kw, kh) += block_sums(c, row, kw, kh, blocks.x, blocks.y);
        (*grad_weight)(kw, kh, c, row) = narrow(total(c, row, kw, kh), dtype);

        WeightTileStages stages{grid_error, row_error, ImageParam(*grad_y), channels_last, shifted_pairs,
                                sums,       block_sums, total, *grad_weight, kw, kh, c, row, w, h, b, pair, q, band,
                                slot,       r,          blocks, pair_rows, pairs_row_stride(channels),
                                experts * F};
        schedule_backward_weight_dense_tiles(stages, get_target());
    }

    // The expert-major order (shared routing): per band, row and group of `group_pixels` pixels,
    // each expert sums the group's pixels that select it, in order, then adds that to its row.
    void sum_by_expert_groups(Func input, Func gated, Expr bands, const Type &value_type) {
        Var kw("kw"), kh("kh"), c("c"), row("row"), band("band"), w("w"), h("h"), g("g"), k("k"), b("b");
        const auto [F, width, height, batch, slots, selected, K, pad, experts] = extents();
        // The inverse of the routing, per group; then, scattered from the pixels' slots, per list
        // entry its pixel (within the group) and, per output channel f of the expert and sample, its
        // dŷ. Entries past the lists are never read; those before are each written, once per slot
        // that selects the entry's expert.
        check_group_pixels("group_pixels", group_pixels);
        Expr group_length = group_pixels;
        if (batched_group_pixels > 0) {
            check_group_pixels("batched_group_pixels", batched_group_pixels);
            group_length = select(batch >= kBatchedGroupSamples, batched_group_pixels, group_pixels);
        }
        const ExpertLists lists = make_expert_lists(*indices, width, selected, experts, group_length);
        const Expr span = lists.span, groups = lists.groups;
        Var j("j"), i("i"), f("f");
        Func entry_place("entry_place");  // (slot, pixel of the group, g, h)
        entry_place(j, i, g, h) = lists.place(j, i, g, h);
        RDom pick(0, selected, 0, span, "pick");  // (slot, pixel of the group)
        pick.where(g * span + pick.y < width);
        Func group_pixel("group_pixel");
        group_pixel(k, g, h) = undef<int32_t>();
        group_pixel(entry_place(pick.x, pick.y, g, h), g, h) = pick.y;
        RDom entry(0, F, 0, selected, 0, span, "entry");  // (f, slot, pixel of the group)
        entry.where(g * span + entry.z < width);
        Func group_error("group_error");
        group_error(b, f, k, g, h) = undef(value_type);
        group_error(b, entry.x, entry_place(entry.y, entry.z, g, h), g, h) =
            gated(min(g * span + entry.z, width - 1), h, entry.y * F + entry.x, b);

        // What one (group, expert row) adds to the row: per sample, over the group's pixels that
        // select the expert (in order), each pixel's dŷ times its receptive field. The list entries
        // and pixels read are in range by construction, which the summing loop is told instead of
        // clamping them at every step.
        RDom r(0, span, 0, batch, "r");
        Expr expert = row / F;
        r.where(r.x < lists.pixel_count(expert, g, h));
        Expr listed = unsafe_promise_clamped(lists.list_start(expert, g, h) + r.x, 0, lists.entries - 1);
        Expr pixel = unsafe_promise_clamped(g * span + group_pixel(listed, g, h), 0, width - 1);
        Func contribution("contribution");
        contribution(kw, kh, c, row, g, h) = cast(value_type, 0);
        contribution(kw, kh, c, row, g, h) +=
            group_error(r.y, row % F, listed, g, h) * input(pixel + kw - pad, h + kh - pad, c, r.y);

        // Per band, its rows' groups in order. Rows past the grid add zero to the edge row.
        RDom rg(0, groups, 0, band_rows, "rg");
        Expr grid_row = band * band_rows + rg.y;
        Func partial("partial");
        partial(kw, kh, c, row, band) = cast(value_type, 0);
        partial(kw, kh, c, row, band) += select(grid_row < height,
                                                contribution(kw, kh, c, row, rg.x, min(grid_row, height - 1)),
                                                cast(value_type, 0));

        RDom t(0, bands, "t");
        Func total("total");
        total(kw, kh, c, row) = cast(value_type, 0);
        total(kw, kh, c, row) += partial(kw, kh, c, row, t);
        (*grad_weight)(kw, kh, c, row) = narrow(total(kw, kh, c, row), dtype);

        ExpertGroupStages stages{input, gated, lists, entry_place, group_pixel, group_error, contribution, partial,
                                 total, *grad_weight, kw, kh, c, row, band, g, j, h, b, r, rg, t, pick, entry,
                                 F, batch, width};
        if (!using_autoscheduler()) {
            schedule_expert_groups(stages, Knobs("backward_weight", knobs, knobs_target, get_target()), get_target());
        }
    }
};

}  // namespace
}  // namespace smoe

HALIDE_REGISTER_GENERATOR(smoe::SpatialMoEBackwardWeight, smoe_backward_weight)
