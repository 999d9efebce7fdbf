// Spatial MoE backward, input side (DESIGN.md §4 "Backward, expert side"):
//   grad_x[b, c, h', w'] = Σ_{j,f,kh,kw} weight[idx(j,h,w)·F+f, c, kh, kw] · dŷ[b, j·F+f, h, w]
// with h = h'−kh+P, w = w'−kw+P inside the grid and dŷ = dy damped at misrouted elements
// (DESIGN.md §4 "Damping"; δ = 1 turns it off), times the routing score when weighted. Each output pixel gathers from the experts selected at the K·K pixels it feeds.
#include "Halide.h"

#include "backward_data_schedule.h"
#include "dense_tiles.h"
#include "dense_tiles_schedule.h"
#include "error_signal.h"
#include "precision.h"

namespace smoe {
namespace {

using namespace Halide;

class SpatialMoEBackwardData : public Generator<SpatialMoEBackwardData> {
public:
    GeneratorParam<Type> dtype{"dtype", Float(32)};
    // Schedule knobs, "name:value,..." (schedules/knobs.h), applied to `knobs_target` only when set.
    GeneratorParam<std::string> knobs{"knobs", ""};
    GeneratorParam<std::string> knobs_target{"knobs_target", ""};
    GeneratorParam<bool> shared_routing{"shared_routing", true};
    GeneratorParam<bool> weighted{"weighted", false};
    // bfloat16 only, CPU targets with AMX tiles (avx512_sapphirerapids), shared routing: dŷ
    // scattered onto every expert row (zero where a row is not selected), then per grid row one
    // matrix product [C x K·K·NE·F] x [K·K·NE·F x pixels] on the tiles: NE/E times the products of
    // the selected experts alone, at the tiles' rate (schedules/cpu/data_gradient_tiles.cpp).
    GeneratorParam<bool> dense_tiles{"dense_tiles", false};

    GeneratorInput<Buffer<>> *grad_y = nullptr;          // (w, h, j·F + f, b)
    GeneratorInput<Buffer<>> *weight = nullptr;          // (kw, kh, c, expert·F + f)
    GeneratorInput<Buffer<int32_t>> *indices = nullptr;  // (w, h, j) or (w, h, j, b)
    GeneratorInput<Buffer<>> *values = nullptr;          // like indices; only when weighted
    GeneratorInput<int32_t> *out_per_expert = nullptr;   // F
    GeneratorInput<Buffer<>> *quantile = nullptr;        // Q_b(dy), (b), for damping
    GeneratorInput<double> *error_scale = nullptr;       // s
    GeneratorInput<double> *damping = nullptr;           // δ; 1 = no damping
    GeneratorOutput<Buffer<>> *grad_x = nullptr;         // (w, h, c, b)

    void configure() {
        const int routing_dims = shared_routing ? 3 : 4;
        grad_y = add_input<Buffer<>>("grad_y", dtype, 4);
        weight = add_input<Buffer<>>("weight", dtype, 4);
        indices = add_input<Buffer<int32_t>>("indices", routing_dims);
        if (weighted) values = add_input<Buffer<>>("values", dtype, routing_dims);
        out_per_expert = add_input<int32_t>("F");
        quantile = add_input<Buffer<>>("quantile", compute_type_of(dtype), 1);
        error_scale = add_input<double>("error_scale");
        damping = add_input<double>("damping");
        grad_x = add_output<Buffer<>>("grad_x", dtype, 4);
    }

    void generate() {
        Var w("w"), h("h"), c("c"), b("b"), jf("jf");
        Expr F = *out_per_expert;
        Expr width = grad_y->dim(0).extent(), height = grad_y->dim(1).extent();
        Expr slots = grad_y->dim(2).extent();
        Expr K = weight->dim(0).extent();
        Expr pad = K / 2;
        Expr experts = weight->dim(3).extent() / F;
        const Region grid = {{0, width}, {0, height}, {Expr(), Expr()}, {Expr(), Expr()}};
        const Type t = compute_type_of(dtype);
        if (dense_tiles && (dtype != BFloat(16) || !shared_routing ||
                            !get_target().has_feature(Target::AVX512_SapphireRapids))) {
            throw CompileError("smoe_backward_data: dense_tiles=true needs dtype=bfloat16, shared routing and an "
                               "avx512_sapphirerapids target");
        }

        // dŷ, zero outside the grid.
        Func gated("gated");
        Expr gate = cast(t, 1);
        if (weighted) gate = widen(shared_routing ? (*values)(w, h, jf / F) : (*values)(w, h, jf / F, b), t);
        Expr error = damped_error(widen((*grad_y)(w, h, jf, b), t), (*quantile)(b), *error_scale, *damping);
        gated(w, h, jf, b) = weighted ? error * gate : error;
        if (dense_tiles) {
            generate_dense_tiles(gated, w, h, c, b, K, pad, slots, experts, F);
            return;
        }
        Func grad_out = BoundaryConditions::constant_exterior(gated, cast(t, 0), grid);

        // Weight row of each output channel; off the grid the edge's row (multiplied by zero).
        // Indices are range-checked by the caller; one out of range reads expert 0's row rather than
        // memory past the bank. A select and not a clamp: Halide knows a clamped value's bounds and
        // clamps the stored row again at every read, here in the innermost loop (about 6 of the 27
        // instructions per step of the channel axpys); the read instead promises the range.
        Func routing_edge = BoundaryConditions::repeat_edge(
            *indices, shared_routing ? Region{{0, width}, {0, height}, {Expr(), Expr()}}
                                     : Region{{0, width}, {0, height}, {Expr(), Expr()}, {Expr(), Expr()}});
        std::vector<Var> row_args = {w, h, jf};
        if (!shared_routing) row_args.push_back(b);
        std::vector<Expr> slot_args = {w, h, jf / F};
        if (!shared_routing) slot_args.push_back(b);
        Func expert_row("expert_row");
        Expr expert = routing_edge(slot_args);
        expert_row(row_args) = select(expert >= 0 && expert < experts, expert, 0) * F + jf % F;

        Var kw("kw"), kh("kh"), row("row");
        Func bank("bank");
        bank(kw, kh, c, row) = widen((*weight)(kw, kh, c, row), t);

        // The weight tap (kw, kh) of output channel jf's expert at pixel (w, h) applies to input
        // channel c: a Func, so that a schedule may lay it out per grid row.
        std::vector<Var> tap_args = {kw, kh, c, w, h, jf};
        if (!shared_routing) tap_args.push_back(b);
        Func tap_weight("tap_weight");
        tap_weight(tap_args) = bank(kw, kh, c, unsafe_promise_clamped(expert_row(row_args), 0, experts * F - 1));

        // Reduction over the output channels of the K·K pixels this input pixel feeds.
        RDom r(0, K, 0, K, 0, slots, "r");
        Expr from_w = w - r.x + pad, from_h = h - r.y + pad;
        std::vector<Expr> from_tap = {r.x, r.y, c, from_w, from_h, r.z};
        if (!shared_routing) from_tap.push_back(b);
        Func gradient("gradient");
        gradient(w, h, c, b) = cast(t, 0);
        gradient(w, h, c, b) += tap_weight(from_tap) * grad_out(from_w, from_h, r.z, b);
        (*grad_x)(w, h, c, b) = narrow(gradient(w, h, c, b), dtype);

        BackwardDataStages stages{grad_out, bank, expert_row, tap_weight, gradient, *grad_x, w, h, c, b, r, shared_routing,
                                  grad_x->dim(3).extent(), grad_x->dim(2).extent(), width};
        // Halide's autoschedulers (autotune/) schedule the pipeline themselves.
        if (!using_autoscheduler()) {
            schedule_backward_data(stages, Knobs("backward_data", knobs, knobs_target, get_target()), get_target());
        }
    }

    // dense_tiles: grad_x as the transposed product [channels x K·K·NE·F] x [K·K·NE·F x pixels] per
    // grid row, so that each tile of the result is 16 channels x 16 pixels of grad_x's own rows. The
    // left operand is the bank, one row per input channel over the receptive field's depth
    // (generators/dense_tiles.h, FieldOrder; taps flipped); the right one dŷ of every bank row
    // (bfloat16: zero where the row is not selected, each selected slot's dŷ rounded once), pixels
    // innermost with each two neighbouring bank rows interleaved, AMX's pairs layout, so that one tap
    // of a strip of pixels is a contiguous run.
    void generate_dense_tiles(Func gated, const Var &w, const Var &h, const Var &c, const Var &b, const Expr &K,
                              const Expr &pad, const Expr &slots, const Expr &experts, const Expr &F) {
        const Expr rows = experts * F;
        const Expr width = grad_y->dim(0).extent(), height = grad_y->dim(1).extent();
        const FieldOrder order{K, rows};
        const Type bf16 = BFloat(16);
        Var k("k"), pair("pair"), kq("kq");

        // Scattered on the grid (grid_error), then copied into the layout padded around the grid
        // (error_pairs).
        RDom slot(0, slots, "slot");
        Func grid_error = scatter_onto_rows(gated, *indices, slot, experts, F, RowLayout::RowPairs, w, h, b);
        const Var parity = grid_error.args()[0], row_pair = grid_error.args()[2];
        Func error_pairs("error_pairs");
        error_pairs(parity, w, row_pair, h, b) =
            select(w >= 0 && w < width && h >= 0 && h < height,
                   grid_error(parity, clamp(w, 0, width - 1), row_pair, clamp(h, 0, height - 1), b), cast(bf16, 0));

        // Per strip of pixels, pair row kq of the depth (two neighbouring bank rows at one tap) for
        // each pixel w: (w · 2 + parity, kq).
        Expr tap = order.tap_of(kq * 2);
        Func strip_pairs("strip_pairs");
        strip_pairs(pair, kq, h, b) =
            error_pairs(pair % 2, pair / 2 - tap % K + pad, order.value_of(kq * 2) / 2, h - tap / K + pad, b);
        // Zero past the channels: a tile product reads whole tiles of rows.
        const Expr channels = grad_x->dim(2).extent();
        Func channel_rows("channel_rows");
        channel_rows(k, c) = select(order.value_of(k) < rows && c < channels,
                                    (*weight)(order.tap_of(k) % K, order.tap_of(k) / K, min(c, channels - 1),
                                              min(order.value_of(k), rows - 1)),
                                    cast(bf16, 0));
        RDom r(0, order.depth(), "r");
        Func dense =
            tile_product("dense", {w, c, h, b}, channel_rows(r.x, c), strip_pairs(w * 2 + r.x % 2, r.x / 2, h, b));
        Func dense_rows("dense_rows");
        dense_rows(w, c, h, b) = dense(w, c, h, b);
        (*grad_x)(w, h, c, b) = narrow(dense_rows(w, c, h, b), bf16);

        DataGradientTileStages stages{grid_error, error_pairs, strip_pairs, channel_rows, dense, dense_rows, *grad_x,
                                      w,          h,           c,           b,            pair,  kq,         r.x,
                                      slot,       ImageParam(*grad_y),      channels};
        schedule_backward_data_dense_tiles(stages, get_target());
    }
};

}  // namespace
}  // namespace smoe

HALIDE_REGISTER_GENERATOR(smoe::SpatialMoEBackwardData, smoe_backward_data)
