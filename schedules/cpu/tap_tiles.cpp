// CPU schedule of the weight gradient's tap-tiles formulation (knob formulation=1, shared routing).
//
// What one (pixel, slot) adds to its expert's row is an outer product of its dŷ over the batch
// with the receptive field: for a block of `channel_vectors` channel vectors, a row of taps of it
// is one register tile, summed over the batch (per sample one broadcast dŷ and a vector load per
// accumulator), then added to the expert's row of the band's partial sum.
//
// - The channel blocks are the outermost loop of a band's task: the band's partial rows and its
//   channel-innermost input rows are then a block's share of them, which stay in L2 while the
//   band's pixels are visited; a pixel's receptive field (taps x samples) stays in L1 across its
//   slots.
// - Bands are summed last, in band order, vectorised over channels: deterministic, whatever the
//   number of threads.
#include "tap_tiles.h"

namespace smoe {

using namespace Halide;

namespace {

// Taps along kw in one register tile: a K = 3 row of taps (every benchmark layer), a 5 or 7 in
// two or three passes.
constexpr int kTaps = 3;

}  // namespace

void schedule_tap_tiles_cpu(BackwardWeightStages &s, const Knobs &knobs, const Target &target) {
    const int lanes = target.natural_vector_size(s.total.type());
    const int registers = target.has_feature(Target::AVX512) ? 32 : 16;
    // A tile holds kTaps x channel_vectors accumulators: 3 x 4 of AVX-512's 32 registers.
    const int channel_vectors = knobs["channel_vectors"] > 0 ? knobs["channel_vectors"] : registers / 8;
    const int block = lanes * channel_vectors;
    const TailStrategy tail = TailStrategy::GuardWithIf;

    s.partial.compute_root().reorder_storage(s.c, s.kw, s.kh, s.row, s.band);
    s.partial.reorder(s.c, s.kw, s.kh, s.row, s.band).parallel(s.band).vectorize(s.c, lanes, tail);

    // Per band and channel block, its pixels in order; per (pixel, slot, kh) kTaps taps of the block.
    Var co("co"), ci("ci"), kwo("kwo"), kwi("kwi");
    s.partial.update()
        .split(s.c, co, ci, block, tail)
        .split(s.kw, kwo, kwi, kTaps, tail)
        .reorder(ci, kwi, kwo, s.kh, s.p.x, s.p.y, s.p.z, co, s.band)
        .parallel(s.band)
        .vectorize(ci, lanes)
        .unroll(ci)
        .unroll(kwi);

    // The register tile: kTaps taps x a block of channels of one (pixel, slot, kh), fixed-size.
    s.contribution.compute_at(s.partial, kwo).reorder_storage(s.c, s.kw, s.kh, s.w, s.h, s.jf);
    for (const Var &v : s.contribution.args()) {
        s.contribution.bound_storage(v, v.same_as(s.c) ? block : v.same_as(s.kw) ? kTaps : 1);
    }
    auto register_tile = [&](Stage stage) {
        stage.vectorize(s.c, lanes, tail).unroll(s.c, channel_vectors, tail).unroll(s.kw, kTaps, tail);
    };
    register_tile(s.contribution);
    s.contribution.update().reorder(s.c, s.kw, s.kh, s.rb);
    register_tile(s.contribution.update());

    // dŷ once per call, samples innermost: a (pixel, slot)'s batch is one contiguous run.
    s.gated.compute_root().reorder_storage(s.b, s.jf, s.w, s.h);
    s.gated.reorder(s.w, s.b, s.jf, s.h).parallel(s.h).vectorize(s.w, lanes, tail);

    // The block's input channel-innermost for the band's rows and halo, samples next: a tap's
    // block for every sample is one contiguous run.
    const std::vector<Var> in = s.input.args();  // (w, h, c, b)
    s.input.compute_at(s.partial, co).reorder_storage(in[2], in[3], in[0], in[1]);
    s.input.reorder(in[2], in[3], in[0], in[1]).vectorize(in[2], lanes, tail);

    s.total.compute_root().reorder_storage(s.c, s.kw, s.kh, s.row);
    s.total.parallel(s.row).vectorize(s.c, lanes, tail);
    s.total.update().reorder(s.c, s.kw, s.kh, s.t, s.row).parallel(s.row).vectorize(s.c, lanes, tail);
    s.output.reorder(s.c, s.kw, s.kh, s.row).parallel(s.row).vectorize(s.c, lanes, tail);
}

}  // namespace smoe
