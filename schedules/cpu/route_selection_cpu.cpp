// CPU schedule of top-E routing's selection first (generator select_first=true): one task per
// grid row, its slots scattered per vector of pixels. Every stage of a vector of
// pixels runs with the pixels in the lanes, so that all its loops over experts, key bits and
// selected experts are vector steps, and the vector's keys, running counts and chosen list stay
// in L1.
#include "route_topk_schedule.h"

namespace smoe {

using namespace Halide;

void schedule_route_selection(RouteSelectStages &s, const Knobs &knobs, const Target &target) {
    // One vector register of pixels (the rank-all schedule's pixel_vector is tuned for its own loops;
    // wider vectors here measured slower: their keys and lists outgrow L1).
    const int lanes = target.natural_vector_size(Int(32));
    const TailStrategy tail = TailStrategy::GuardWithIf;
    Var row("row"), wo("wo"), wi("wi");
    Func indices = s.indices;
    schedule_route_outputs_cpu(indices, s.values, s.w, s.h, s.j, s.b, row, lanes, knobs["rows_per_task"]);

    s.slot_expert.compute_at(indices, row);
    s.slot_expert.update().split(s.w, wo, wi, lanes, tail).reorder(wi, s.scatter, wo).vectorize(wi);
    const LoopLevel vector_of_pixels(s.slot_expert, wo);
    // Each vector's stages are allocated once per task, not per vector of pixels (Intel Xeon family 6
    // model 207, JIT: ens10-like 8.44 -> 8.10 ms, weatherbench 1.49 -> 1.46).
    auto per_vector = [&](Func f) {
        f.compute_at(vector_of_pixels).hoist_storage(indices, row).vectorize(s.w, lanes, tail);
    };
    per_vector(s.key);
    s.key.store_in(MemoryType::Stack);
    // Each threshold pass counts, per pixel, the keys below a candidate: one compare (with the key
    // from memory) and add per expert, and the adds form one loop-carried chain. The experts are
    // split among `count_chains` running counts (rfactor), independent chains summed after the pass;
    // their storage bound to one vector so that they stay in registers. Measured on AVX2 (AMD EPYC family
    // 25 model 1, JIT, route_topk alone): ens10-like 15.7-17.2 -> 13.5 ms with 4 chains (8: 13.7-14.4,
    // 2: no gain), weatherbench 2.4-3.1 -> 2.1-2.3 ms.
    const int chains = knobs["count_chains"];
    for (size_t step = 0; step < s.counts.size(); ++step) {
        per_vector(s.counts[step]);
        if (chains > 1) {
            RVar oo("oo"), oi("oi");
            Var chain("chain");
            Func partial = s.counts[step].update().split(s.count_domains[step], oo, oi, chains).rfactor(oi, chain);
            partial.compute_at(vector_of_pixels).bound_storage(s.w, lanes).vectorize(s.w, lanes, tail).unroll(chain);
            partial.update().reorder(s.w, chain, oo).vectorize(s.w, lanes, tail).unroll(chain);
            s.counts[step].update().vectorize(s.w, lanes, tail);
        } else {
            s.counts[step].update().reorder(s.w, s.count_domains[step]).vectorize(s.w, lanes, tail);
        }
        per_vector(s.thresholds[step]);
    }
    per_vector(s.greater);
    s.greater.update().reorder(s.w, s.over_greater).vectorize(s.w, lanes, tail);
    per_vector(s.before);
    s.before.update().reorder(s.w, s.later).vectorize(s.w, lanes, tail);
    per_vector(s.chosen);
    s.chosen.update().reorder(s.w, s.gather).vectorize(s.w, lanes, tail);
    per_vector(s.chosen_key);
    // The ranks: per block of list positions one load of each other key, compared with all of the
    // block's keys. Their counts are one vector apart at a constant stride, so that LLVM sees they
    // do not alias and keeps them in registers (with the vector's run-time width as the stride it
    // stored and reloaded each count at every step).
    per_vector(s.block_rank);
    s.block_rank.bound_storage(s.w, lanes);
    s.block_rank.bound(s.r, 0, s.rank_block);
    const RDom others[] = {s.earlier, s.after, s.inside};
    for (int update = 0; update < 3; ++update) {
        s.block_rank.update(update).reorder(s.w, s.r, others[update], s.block).vectorize(s.w, lanes, tail).unroll(s.r);
    }
}

}  // namespace smoe
