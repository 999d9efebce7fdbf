// Top-E routing (DESIGN.md §4 "Routing"): per pixel, the E experts with the highest scores,
// best first; equal scores rank the lower expert index first.
//
// Each expert's rank is the number of experts that beat it under a strict total order on
// (score, index), so the ranks of a pixel are always a permutation of 0..NE-1 and the experts with
// rank < E are scattered to their slots. Scores compare through an order-preserving integer key
// of their bits, so NaN ranks above everything (as torch.topk does) and -0 equals +0.
//
// With `select_first` (CPU, for many experts) the ranks are counted among the selected experts
// only: first each pixel's E-th best key, found bit by bit from the top (a count of the keys below
// each candidate), then the experts above it and, of those equal to it, the lowest indices,
// gathered in index order; E·E comparisons instead of NE·NE, plus NE per key bit. Their ranks are
// counted for blocks of kRankBlock experts at once, so that each key read serves the block.
#include <functional>
#include <tuple>

#include "Halide.h"

#include "precision.h"
#include "route_topk_schedule.h"

namespace smoe {
namespace {

using namespace Halide;

// List positions whose ranks among the selected are counted together (select_first).
constexpr int kRankBlock = 4;

class RouteTopK : public Generator<RouteTopK> {
public:
    GeneratorParam<Type> dtype{"dtype", Float(32)};
    // Schedule knobs, "name:value,..." (schedules/knobs.h), applied to `knobs_target` only when set.
    GeneratorParam<std::string> knobs{"knobs", ""};
    GeneratorParam<std::string> knobs_target{"knobs_target", ""};
    GeneratorParam<bool> select_first{"select_first", false};

    // Shared routing [NE,H,W] is passed as a batch of one.
    GeneratorInput<Buffer<>> *routing = nullptr;          // (w, h, e, b)
    GeneratorOutput<Buffer<int32_t>> *indices = nullptr;  // (w, h, j, b)
    GeneratorOutput<Buffer<>> *values = nullptr;          // (w, h, j, b)

    void configure() {
        routing = add_input<Buffer<>>("routing", dtype, 4);
        indices = add_output<Buffer<int32_t>>("indices", 4);
        values = add_output<Buffer<>>("values", dtype, 4);
    }

    void generate() {
        Var w("w"), h("h"), e("e"), j("j"), b("b");
        Expr experts = routing->dim(2).extent();
        Expr selected = indices->dim(2).extent();
        // Half-precision scores widen to float32 exactly, so their order is unchanged.
        const Type t = compute_type_of(dtype);
        const int bits = t.bits();
        const Type key_type = Int(bits);

        // Order-preserving key: flip the magnitude bits of negatives; one NaN, one zero.
        Func key("key");
        Expr score = widen((*routing)(w, h, e, b), t);
        Expr canonical = select(is_nan(score), cast(t, NAN), score == 0, cast(t, 0), score);
        Expr raw = reinterpret(key_type, canonical);
        Expr magnitude_mask = key_type.max();  // all bits but the sign
        key(w, h, e, b) = raw ^ ((raw >> (bits - 1)) & magnitude_mask);
        if (select_first) {
            generate_selection(key, bits);
            return;
        }

        auto [rank, below, above] = count_ranks([&](const Expr &o) { return key(w, h, o, b); }, w, h, e, b, experts);

        // Every expert is stored: those ranked E or worse land in a spare slot E that no output
        // reads, so the scatter needs no test per pixel. The ranks are a permutation of 0..NE-1
        // and E <= NE, so each slot below E receives exactly one expert and needs no initial value.
        RDom scatter(0, experts, "scatter");
        Func slot_expert("slot_expert");
        slot_expert(w, h, j, b) = undef<int32_t>();
        slot_expert(w, h, clamp(rank(w, h, scatter, b), 0, selected), b) = scatter;

        (*indices)(w, h, j, b) = slot_expert(w, h, j, b);
        (*values)(w, h, j, b) = (*routing)(w, h, clamp((*indices)(w, h, j, b), 0, experts - 1), b);

        RouteTopKStages stages{key, rank, slot_expert, *indices, *values, w, h, e, j, b, below, above, scatter};
        // Halide's autoschedulers (autotune/) schedule the pipeline themselves.
        if (!using_autoscheduler()) {
            schedule_route_topk(stages, Knobs("route_topk", knobs, knobs_target, get_target()), get_target());
        }
    }

private:
    // rank(p) = #{o : key(o) > key(p), or key(o) == key(p) and o < p} over positions 0..count-1: on
    // equal keys the positions below p beat it and those above do not. Two passes, one per side of
    // p, so that no comparison carries the tie-break term; both compare strictly (the p positions
    // below, less those p beats), so that each step is one signed compare and one add.
    static std::tuple<Func, RDom, RDom> count_ranks(const std::function<Expr(const Expr &)> &key_at, const Var &w,
                                                    const Var &h, const Var &p, const Var &b, const Expr &count) {
        RDom below(0, count, "below");
        below.where(below < p);
        RDom above(0, count, "above");
        above.where(above > p);
        Func rank("rank");
        rank(w, h, p, b) = p;
        rank(w, h, p, b) -= select(key_at(p) > key_at(below), 1, 0);
        rank(w, h, p, b) += select(key_at(above) > key_at(p), 1, 0);
        return {rank, below, above};
    }

    // select_first: the E best experts of each pixel, then their ranks among themselves. Every
    // comparison is of signed keys: AVX2 has no unsigned vector compare, and "a > b" is one
    // instruction that takes b from memory.
    void generate_selection(Func key, int bits) {
        if (get_target().has_gpu_feature()) {
            throw CompileError("smoe_route_topk: select_first=true is scheduled for CPUs only");
        }
        Var w("w"), h("h"), e("e"), i("i"), j("j"), b("b"), r("r"), block("block");
        Expr experts = routing->dim(2).extent();
        Expr selected = indices->dim(2).extent();
        // The threshold is built bit by bit on the unsigned form of the keys (the same order with
        // the sign bit flipped) and compared in the signed form.
        const Type bits_type = UInt(bits);
        const Expr sign_bit = cast(bits_type, 1) << (bits - 1);
        auto as_signed = [&](const Expr &u) { return reinterpret(Int(bits), u ^ sign_bit); };

        // The E-th best key: the largest T with at least E keys >= T, one bit at a time from the top.
        // The keys >= a candidate are NE less those below it.
        RouteSelectStages stages;
        Func threshold("threshold_0");
        threshold(w, h, b) = cast(bits_type, 0);
        for (int bit = bits - 1; bit >= 0; --bit) {
            const std::string step = std::to_string(bits - bit);
            Expr candidate = threshold(w, h, b) | (cast(bits_type, 1) << bit);
            RDom over(0, experts, "over_" + step);
            Func below("below_" + step);
            below(w, h, b) = 0;
            below(w, h, b) += select(as_signed(candidate) > key(w, h, over, b), 1, 0);
            Func next("threshold_" + step);
            next(w, h, b) = select(experts - below(w, h, b) >= selected, candidate, threshold(w, h, b));
            stages.counts.push_back(below);
            stages.thresholds.push_back(next);
            stages.count_domains.push_back(over);
            threshold = next;
        }
        Expr signed_threshold = as_signed(threshold(w, h, b));
        RDom over(0, experts, "over_greater");
        Func greater("greater");
        greater(w, h, b) = 0;
        greater(w, h, b) += select(key(w, h, over, b) > signed_threshold, 1, 0);
        // An expert is selected when above the threshold, or equal to it and among the first
        // (E - greater) such experts by index.
        auto is_selected = [&](const Expr &k, const Expr &equal_before) {
            return k > signed_threshold || (k == signed_threshold && equal_before < selected - greater(w, h, b));
        };
        // Before each expert: how many keys equal to the threshold and how many above it (two
        // running counts, independent chains). The selected before it are those above and the
        // first (E - greater) of those equal.
        RDom later(1, max(experts - 1, 0), "later");
        Func before("before");
        before(w, h, e, b) = Tuple(0, 0);
        Expr previous = key(w, h, later - 1, b);
        before(w, h, later, b) = Tuple(before(w, h, later - 1, b)[0] + select(previous == signed_threshold, 1, 0),
                                       before(w, h, later - 1, b)[1] + select(previous > signed_threshold, 1, 0));
        // The selected experts in index order; the others land in a spare entry E. Their keys are
        // read back by index: a scatter of the keys as well would store a value per expert and
        // pixel, the read one per selected expert.
        RDom gather(0, experts, "gather");
        Expr equal_before = before(w, h, gather, b)[0], above_before = before(w, h, gather, b)[1];
        Expr chosen = is_selected(key(w, h, gather, b), equal_before);
        Expr position = above_before + min(equal_before, selected - greater(w, h, b));
        Func chosen_list("chosen_list");
        chosen_list(w, h, i, b) = 0;
        chosen_list(w, h, select(chosen, clamp(position, 0, selected - 1), selected), b) = gather;
        Func chosen_key("chosen_key");
        chosen_key(w, h, i, b) = key(w, h, clamp(chosen_list(w, h, i, b), 0, experts - 1), b);

        // Ranks among them, for a block of kRankBlock list positions p at once: rank(p) =
        // #{o : key(o) > key(p), or key(o) == key(p) and o < p} (index order = list order, so the
        // tie-break is the list position). Every position before the block beats p unless
        // key(p) > key(o); after the block, o beats p when key(o) > key(p). A last block's
        // positions past E rank junk and are never scattered.
        Expr first = block * kRankBlock;
        Expr key_p = chosen_key(w, h, first + r, b);
        Func block_rank("block_rank");
        block_rank(w, h, r, block, b) = first;
        RDom earlier(0, selected, "earlier");
        earlier.where(earlier < first);
        block_rank(w, h, r, block, b) -= select(key_p > chosen_key(w, h, earlier, b), 1, 0);
        RDom after(0, selected, "after");
        after.where(after >= first + kRankBlock);
        block_rank(w, h, r, block, b) += select(chosen_key(w, h, after, b) > key_p, 1, 0);
        RDom inside(0, kRankBlock, "inside");
        inside.where(first + inside < selected);
        Expr key_o = chosen_key(w, h, first + inside, b);
        block_rank(w, h, r, block, b) +=
            select(inside < r, select(key_o >= key_p, 1, 0), inside > r, select(key_o > key_p, 1, 0), 0);

        RDom scatter(0, selected, "scatter");
        Func slot_expert("slot_expert");
        slot_expert(w, h, j, b) = undef<int32_t>();
        Expr rank = block_rank(w, h, scatter % kRankBlock, scatter / kRankBlock, b);
        slot_expert(w, h, clamp(rank, 0, selected - 1), b) = chosen_list(w, h, scatter, b);

        (*indices)(w, h, j, b) = slot_expert(w, h, j, b);
        (*values)(w, h, j, b) = (*routing)(w, h, clamp((*indices)(w, h, j, b), 0, experts - 1), b);

        stages.key = key;
        stages.greater = greater;
        stages.before = before;
        stages.chosen = chosen_list;
        stages.chosen_key = chosen_key;
        stages.block_rank = block_rank;
        stages.slot_expert = slot_expert;
        stages.indices = *indices;
        stages.values = *values;
        stages.w = w, stages.h = h, stages.e = e, stages.i = i, stages.j = j, stages.b = b;
        stages.r = r, stages.block = block;
        stages.rank_block = kRankBlock;
        stages.over_greater = over;
        stages.later = later;
        stages.gather = gather;
        stages.earlier = earlier;
        stages.after = after;
        stages.inside = inside;
        stages.scatter = scatter;
        if (!using_autoscheduler()) {
            schedule_route_selection(stages, Knobs("route_topk", knobs, knobs_target, get_target()), get_target());
        }
    }
};

}  // namespace
}  // namespace smoe

HALIDE_REGISTER_GENERATOR(smoe::RouteTopK, smoe_route_topk)
