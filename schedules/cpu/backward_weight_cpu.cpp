// CPU schedule of the weight gradient: one parallel task per band of rows. Its input rows are
// re-laid out channel-innermost; per (pixel, output channel) the contribution over all
// (kh, kw, c) is accumulated across the batch with `channel_vectors` channel vectors in
// registers, then added to the expert's row of the band's partial sum. Bands are summed last,
// in band order, vectorised over channels.
#include "backward_weight_schedule.h"

namespace smoe {

using namespace Halide;

void schedule_backward_weight_cpu(BackwardWeightStages &s, const BackwardWeightKnobs &knobs, const Target &target) {
    const int lanes = target.natural_vector_size(s.output.type());
    const int registers = target.has_feature(Target::AVX512) ? 32 : 16;
    const int channel_vectors = knobs.channel_vectors > 0 ? knobs.channel_vectors : registers * 3 / 4;

    s.partial.compute_root().reorder_storage(s.c, s.kw, s.kh, s.row, s.band);
    s.partial.reorder(s.c, s.kw, s.kh, s.row, s.band).parallel(s.band).vectorize(s.c, lanes, TailStrategy::GuardWithIf);
    Stage scatter = s.partial.update();
    if (s.shared_routing) {
        scatter.reorder(s.c, s.kw, s.kh, s.p.x, s.p.y, s.p.z, s.band);
    } else {
        scatter.reorder(s.c, s.kw, s.kh, s.p.x, s.p.w, s.p.y, s.p.z, s.band);
    }
    scatter.parallel(s.band).vectorize(s.c, lanes, TailStrategy::GuardWithIf);

    // The contribution of one (pixel, output channel): all (kh, kw, c), channel-innermost.
    const std::vector<Var> contribution_args = s.contribution.args();
    s.contribution.compute_at(s.partial, s.p.x).reorder_storage(s.c, s.kw, s.kh)
        .vectorize(s.c, lanes, TailStrategy::GuardWithIf);
    if (s.shared_routing) {
        Var co("co"), ci("ci");
        s.contribution.update()
            .split(s.c, co, ci, lanes * channel_vectors, TailStrategy::GuardWithIf)
            .reorder(ci, s.rb, co, s.kw, s.kh)
            .vectorize(ci, lanes, TailStrategy::GuardWithIf)
            .unroll(ci);
    }

    // Channel-innermost copy of the band's input rows (plus the halo).
    const std::vector<Var> in = s.input.args();  // (w, h, c, b)
    s.input.compute_at(s.partial, s.band).reorder_storage(in[2], in[3], in[0], in[1]);
    s.input.reorder(in[0], in[2], in[3], in[1]).vectorize(in[0], lanes, TailStrategy::GuardWithIf);

    s.total.compute_root().reorder_storage(s.c, s.kw, s.kh, s.row);
    s.total.parallel(s.row).vectorize(s.c, lanes, TailStrategy::GuardWithIf);
    s.total.update().reorder(s.c, s.kw, s.kh, s.t, s.row).parallel(s.row).vectorize(s.c, lanes, TailStrategy::GuardWithIf);
    Func out = s.output;
    out.reorder(s.c, s.kw, s.kh, s.row).parallel(s.row).vectorize(s.c, lanes, TailStrategy::GuardWithIf);
}

}  // namespace smoe
