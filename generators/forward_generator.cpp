// Spatial MoE forward (DESIGN.md §4 "Forward"): each output channel j·F+f at pixel (h, w) is the
// F-channel response of the j-th selected expert there, optionally gated by its routing score.
// Only the selected experts are evaluated.
#include "Halide.h"

#include "dense_tiles.h"
#include "dense_tiles_schedule.h"
#include "forward_schedule.h"
#include "precision.h"

namespace smoe {
namespace {

using namespace Halide;

class SpatialMoEForward : public Generator<SpatialMoEForward> {
public:
    GeneratorParam<Type> dtype{"dtype", Float(32)};
    // Schedule knobs, "name:value,..." (schedules/knobs.h), applied to `knobs_target` only when set.
    GeneratorParam<std::string> knobs{"knobs", ""};
    GeneratorParam<std::string> knobs_target{"knobs_target", ""};
    // true: routing [E,H,W] is the same for every sample; false: per-sample [B,E,H,W].
    GeneratorParam<bool> shared_routing{"shared_routing", true};
    // true: multiply each slot by its routing score (values input).
    GeneratorParam<bool> weighted{"weighted", false};
    // bfloat16 only, CPU targets with bf16 dot products (avx512_zen4 and later): the operands stay
    // bfloat16 until they are multiplied, so that a schedule may sum each pair of neighbouring
    // input channels' products in one dot-product instruction (schedules/cpu/channel_dots.cpp).
    GeneratorParam<bool> bf16_pairs{"bf16_pairs", false};
    // bfloat16 only, CPU targets with AMX tiles (avx512_sapphirerapids), shared routing: every
    // expert's response at every pixel as one matrix product per strip of pixels, [pixels x K·K·C]
    // x [K·K·C x NE·F], then each output channel picks its expert's row. NE/E times the products of
    // the selected experts alone, at the tiles' rate (schedules/cpu/dense_tiles.cpp).
    GeneratorParam<bool> dense_tiles{"dense_tiles", false};
    // CPU targets, shared routing: per tile of union_tile_width x union_tile_height pixels, the union
    // of the experts its pixels select, each of them evaluated at every pixel of the tile as one dense
    // product [union rows x C·K·K] x [C·K·K x tile pixels], in blocks of union_block_rows rows; each
    // output channel then picks its expert's row. Where neighbouring pixels share their experts (as
    // under trained gates) the union is the E selected and the tile runs at a dense convolution's
    // rate; under random routing it is all NE experts, the naive path's products without its gather
    // (schedules/cpu/union_tiles.cpp).
    GeneratorParam<bool> union_tiles{"union_tiles", false};
    GeneratorParam<int> union_tile_width{"union_tile_width", 32};
    GeneratorParam<int> union_tile_height{"union_tile_height", 2};
    GeneratorParam<int> union_block_rows{"union_block_rows", 6};

    // Halide dimension order is the reverse of PyTorch's NCHW.
    GeneratorInput<Buffer<>> *x = nullptr;        // (w, h, c, b)
    GeneratorInput<Buffer<>> *weight = nullptr;   // (kw, kh, c, expert·F + f)
    GeneratorInput<Buffer<int32_t>> *indices = nullptr;  // (w, h, j) or (w, h, j, b)
    GeneratorInput<Buffer<>> *values = nullptr;   // like indices; only when weighted
    GeneratorInput<int32_t> *out_per_expert = nullptr;  // F
    GeneratorOutput<Buffer<>> *y = nullptr;       // (w, h, j·F + f, b)

    void configure() {
        const int routing_dims = shared_routing ? 3 : 4;
        x = add_input<Buffer<>>("x", dtype, 4);
        weight = add_input<Buffer<>>("weight", dtype, 4);
        indices = add_input<Buffer<int32_t>>("indices", routing_dims);
        if (weighted) {
            values = add_input<Buffer<>>("values", dtype, routing_dims);
        }
        out_per_expert = add_input<int32_t>("F");
        y = add_output<Buffer<>>("y", dtype, 4);
    }

    void generate() {
        Var w("w"), h("h"), jf("jf"), b("b");
        Expr F = *out_per_expert;
        Expr width = x->dim(0).extent(), height = x->dim(1).extent();
        Expr channels = x->dim(2).extent();
        Expr K = weight->dim(0).extent();
        Expr pad = K / 2;
        Expr experts = weight->dim(3).extent() / F;
        const Type t = compute_type_of(dtype);
        if (bf16_pairs && (dtype != BFloat(16) || get_target().has_gpu_feature())) {
            throw CompileError("smoe_forward: bf16_pairs=true needs dtype=bfloat16 and a CPU target");
        }
        if (dense_tiles && (dtype != BFloat(16) || !shared_routing || bf16_pairs ||
                            !get_target().has_feature(Target::AVX512_SapphireRapids))) {
            throw CompileError("smoe_forward: dense_tiles=true needs dtype=bfloat16, shared routing and an "
                               "avx512_sapphirerapids target");
        }
        if (union_tiles && (!shared_routing || bf16_pairs || dense_tiles || get_target().has_gpu_feature())) {
            throw CompileError("smoe_forward: union_tiles=true needs shared routing, a CPU target and neither "
                               "bf16_pairs nor dense_tiles");
        }
        // The operands' type until they are multiplied: the compute type, or bfloat16 with bf16_pairs
        // (then a plain conversion, which the dot-product instruction pattern recognises).
        const Type operand_type = bf16_pairs ? dtype.value() : t;
        auto product = [&](const Expr &a, const Expr &b) {
            return bf16_pairs ? cast(t, a) * cast(t, b) : a * b;
        };
        // With bf16_pairs the channels are zero-padded to whole blocks of kChannelBlock (16 pairs: a
        // vector of float32 sums on AVX-512), so that the reduction has no tail to guard: a guard
        // inside the vectorised pairs would stay in the hot loop.
        constexpr int kChannelBlock = 32;
        Expr channel_blocks = (channels + kChannelBlock - 1) / kChannelBlock;
        const Region padded_channels = {{Expr(), Expr()}, {Expr(), Expr()}, {0, channels}, {Expr(), Expr()}};

        Func x_values("x_values");
        x_values(_) = bf16_pairs ? (*x)(_) : widen((*x)(_), t);
        Func input = BoundaryConditions::constant_exterior(
            x_values, cast(operand_type, 0),
            {{0, width}, {0, height}, bf16_pairs ? Range(0, channels) : Range(), {Expr(), Expr()}});

        // The weight row of output channel jf: slot j = jf / F of the routing, channel f = jf % F.
        // Indices are range-checked by the caller; the clamp only bounds the gather for Halide.
        auto slot_index = [&](const Expr &slot) {
            return shared_routing ? (*indices)(w, h, slot) : (*indices)(w, h, slot, b);
        };
        Func expert_row("expert_row");
        std::vector<Var> row_args = {w, h, jf};
        if (!shared_routing) row_args.push_back(b);
        expert_row(row_args) = clamp(slot_index(jf / F), 0, experts - 1) * F + jf % F;

        // The expert bank as a Func, so that a schedule may re-lay it out.
        Var kw("kw"), kh("kh"), c("c"), row("row");
        Func bank("bank");
        if (bf16_pairs) {
            Func padded = BoundaryConditions::constant_exterior(*weight, cast(dtype, 0), padded_channels);
            bank(kw, kh, c, row) = padded(kw, kh, c, row);
        } else {
            bank(kw, kh, c, row) = widen((*weight)(kw, kh, c, row), t);
        }

        if (dense_tiles) {
            generate_dense_tiles(w, h, jf, b, K, pad, channels, experts * F, F, expert_row, row_args);
            return;
        }
        if (union_tiles) {
            generate_union_tiles(input, bank, w, h, jf, b, K, pad, channels, experts, F, t);
            return;
        }

        // Reduction over the receptive field: (kw, kh, c), or with bf16_pairs (kw, kh, block, channel
        // of the block) over the padded channels.
        RDom r = bf16_pairs ? RDom(0, K, 0, K, 0, channel_blocks, 0, kChannelBlock, "r")
                            : RDom(0, K, 0, K, 0, channels, "r");
        Expr c_of_r = bf16_pairs ? r.z * kChannelBlock + r.w : r.z;
        // The weight each tap applies at each pixel: a schedule may gather it once per grid row.
        std::vector<Var> tap_args = {kw, kh, c};
        tap_args.insert(tap_args.end(), row_args.begin(), row_args.end());
        Func tap_weight("tap_weight");
        tap_weight(tap_args) = bank(kw, kh, c, expert_row(row_args));
        std::vector<Expr> tap_of_r = {r.x, r.y, c_of_r};
        tap_of_r.insert(tap_of_r.end(), row_args.begin(), row_args.end());
        Func response("response");
        response(w, h, jf, b) = cast(t, 0);
        response(w, h, jf, b) += product(tap_weight(tap_of_r), input(w + r.x - pad, h + r.y - pad, c_of_r, b));

        Expr gate = cast(t, 1);
        if (weighted) {
            gate = widen(shared_routing ? (*values)(w, h, jf / F) : (*values)(w, h, jf / F, b), t);
        }
        (*y)(w, h, jf, b) = narrow(weighted ? response(w, h, jf, b) * gate : response(w, h, jf, b), dtype);

        ForwardStages stages{input, bank, expert_row, tap_weight, response, *y, w, h, jf, b, r, shared_routing, bf16_pairs,
                             y->dim(3).extent(), y->dim(2).extent(), width};
        // Halide's autoschedulers (autotune/) schedule the pipeline themselves.
        if (!using_autoscheduler()) {
            schedule_forward(stages, Knobs("forward", knobs, knobs_target, get_target()), get_target());
        }
    }

private:
    // union_tiles: per tile (tx, ty), `uses` marks the experts its pixels select, `position` numbers
    // them in expert order (an exclusive running count), `members` lists them; the union's rows are
    // member i's rows i·F + f. `block_response` is the response of block `block` of union_block_rows
    // union rows at the tile's pixels (wi, hi); `union_response` keeps the blocks the union fills
    // (the rest are never read, so never written either); the output reads its expert's row there.
    void generate_union_tiles(Func input, Func bank, const Var &w, const Var &h, const Var &jf, const Var &b,
                              const Expr &K, const Expr &pad, const Expr &channels, const Expr &experts,
                              const Expr &F, const Type &t) {
        const int TW = union_tile_width, TH = union_tile_height, R = union_block_rows;
        const Expr width = x->dim(0).extent(), height = x->dim(1).extent();
        const Expr slots = indices->dim(2).extent();
        Var e("e"), i("i"), tx("tx"), ty("ty"), wi("wi"), hi("hi"), ui("ui"), block("block");

        // Pixels past the grid's edge repeat its last ones, which are in the union already.
        RDom p(0, TW, 0, TH, 0, slots, "p");
        Expr selected = (*indices)(min(tx * TW + p.x, width - 1), min(ty * TH + p.y, height - 1), p.z);
        Func uses("uses");
        uses(e, tx, ty) = 0;
        uses(clamp(selected, 0, experts - 1), tx, ty) = 1;

        RDom later(1, experts - 1, "later");
        Func position("position");
        position(e, tx, ty) = 0;
        position(later, tx, ty) = position(later - 1, tx, ty) + uses(later - 1, tx, ty);

        RDom member(0, experts, "member");
        member.where(uses(member, tx, ty) != 0);
        Func members("members");
        members(i, tx, ty) = 0;
        members(clamp(position(member, tx, ty), 0, experts - 1), tx, ty) = member;

        Func blocks("blocks");
        blocks(tx, ty) = ((position(experts - 1, tx, ty) + uses(experts - 1, tx, ty)) * F + R - 1) / R;

        // Rows past the union's end (in its last block) compute member 0's rows.
        auto union_row = [&](const Expr &block_index, const Expr &row_in_block) {
            Expr u = block_index * R + row_in_block;
            return clamp(members(min(u / F, experts - 1), tx, ty), 0, experts - 1) * F + u % F;
        };
        RDom r(0, K, 0, K, 0, channels, "r");
        Func block_response("block_response");
        block_response(wi, hi, ui, block, tx, ty, b) = cast(t, 0);
        block_response(wi, hi, ui, block, tx, ty, b) +=
            bank(r.x, r.y, r.z, union_row(block, ui)) * input(tx * TW + wi + r.x - pad, ty * TH + hi + r.y - pad, r.z, b);

        // Indexed by bank row, so that the output reads its expert's row without looking up the
        // expert's place in the union. A last block's rows past the union's end write member 0's row
        // again with the same sums, or a row no pixel of the tile reads.
        RDom filled(0, R, 0, (experts * F + R - 1) / R, "filled");
        filled.where(filled.y < blocks(tx, ty));
        Var bank_row("bank_row");
        Func union_response("union_response");
        union_response(wi, hi, bank_row, tx, ty, b) = undef(t);
        union_response(wi, hi, union_row(filled.y, filled.x), tx, ty, b) =
            block_response(wi, hi, filled.x, filled.y, tx, ty, b);

        Expr row = clamp((*indices)(w, h, jf / F), 0, experts - 1) * F + jf % F;
        Expr response = union_response(w % TW, h % TH, row, w / TW, h / TH, b);
        Expr gate = weighted ? widen((*values)(w, h, jf / F), t) : cast(t, 1);
        (*y)(w, h, jf, b) = narrow(weighted ? response * gate : response, dtype);

        UnionTileStages stages{input, bank, uses, position, members, blocks, block_response, union_response, *y,
                               w, h, jf, b, wi, hi, tx, ty, e, filled.x, filled.y, r, F, TW, TH, R};
        if (!using_autoscheduler()) schedule_forward_union_tiles(stages, get_target());
    }

    // dense_tiles: the receptive field of each pixel as one row of bfloat16 values (generators/
    // dense_tiles.h), the input channels per tap; the bank as the matching columns, one per expert
    // row, in AMX's pairs layout; `dense` is their product for every row at every pixel, and each
    // output channel takes its expert's row.
    void generate_dense_tiles(const Var &w, const Var &h, const Var &jf, const Var &b, const Expr &K,
                              const Expr &pad, const Expr &channels, const Expr &rows, const Expr &F,
                              Func expert_row, const std::vector<Var> &row_args) {
        const FieldOrder order{K, channels};
        Var k("k"), row("row"), pair("pair"), n("n"), c("c");
        Func input = BoundaryConditions::constant_exterior(
            *x, cast(dtype, 0), {{0, x->dim(0).extent()}, {0, x->dim(1).extent()}, {0, channels}, {Expr(), Expr()}});
        Func channels_last("channels_last");
        channels_last(c, w, h, b) = input(w, h, c, b);
        Func strip("strip");
        strip(k, w, h, b) =
            channels_last(order.value_of(k), w + order.tap_of(k) % K - pad, h + order.tap_of(k) / K - pad, b);
        Func bank_columns("bank_columns");
        bank_columns(k, row) = select(order.value_of(k) < channels,
                                      (*weight)(order.tap_of(k) % K, order.tap_of(k) / K,
                                                min(order.value_of(k), channels - 1), row),
                                      cast(dtype, 0));
        Func bank_pairs = in_pairs_layout(bank_columns, rows, pair);
        RDom r(0, order.depth(), "r");
        Func dense = tile_product("dense", {n, w, h, b}, strip(r.x, w, h, b), bank_pairs(n * 2 + r.x % 2, r.x / 2));
        Func dense_rows("dense_rows");
        dense_rows(n, w, h, b) = dense(n, w, h, b);
        Expr response = dense_rows(expert_row(row_args), w, h, b);
        Expr gate = cast<float>(1);
        if (weighted) gate = widen((*values)(w, h, jf / F), Float(32));
        (*y)(w, h, jf, b) = narrow(weighted ? response * gate : response, dtype);

        DenseTileStages stages{channels_last, strip, bank_pairs, dense, dense_rows, *y, w, h, jf, b, n, k, pair, r.x,
                               pairs_row_stride(rows)};
        schedule_forward_dense_tiles(stages, get_target());
    }
};

}  // namespace
}  // namespace smoe

HALIDE_REGISTER_GENERATOR(smoe::SpatialMoEForward, smoe_forward)
