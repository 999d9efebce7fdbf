// CPU schedule of the weight gradient's slot sweeps (knob formulation=2, shared routing;
// SlotSweepStages in backward_weight_schedule.h).
//
// Pixel-major, one tap and one block of samples at a time: the pixel's receptive field at that tap,
// a block of `channel_vectors` channel vectors x the block's samples, is copied once into a small
// fixed-size buffer (registers, or L1 where they run out) while every slot of the pixel sweeps
// past it, adding its dŷ x that field to its expert's row of the band's partial sum. Per slot and
// channel vector: one load and one store of the row and one FMA per sample, all operands at hand.
// The tap tiles re-read the receptive field for every slot; the fixed block of samples is what
// lets the field stay in registers whatever the batch.
//
// - The channel blocks are the outermost loop of a band's task: the band's partial rows of one
//   block and its channel-innermost input rows stay in L2 while the band's pixels are visited.
// - Bands are summed last, in band order, vectorised over channels: deterministic, whatever the
//   number of threads.
#include "backward_weight_schedule.h"
#include "weight_tiles.h"

namespace smoe {

using namespace Halide;

namespace {

int vector_registers(const Target &target) { return target.has_feature(Target::AVX512) ? 32 : 16; }

}  // namespace

int slot_sweep_samples(const Knobs &knobs, const Target &target) {
    // A vector register's worth of dŷ broadcasts per block: 8 on AVX-512, 4 on AVX2.
    return knobs["sample_block"] > 0 ? knobs["sample_block"] : vector_registers(target) / 4;
}

void schedule_slot_sweeps(SlotSweepStages &s, const Knobs &knobs, const Target &target) {
    if (target.has_gpu_feature()) {
        throw CompileError("smoe: the weight gradient's slot sweeps (formulation=2) are scheduled for CPUs only");
    }
    const TailStrategy tail = TailStrategy::GuardWithIf;
    const int lanes = target.natural_vector_size(s.total.type());
    // A block of 4 vectors by default (64 channels on AVX-512): with 8 samples, the field fills the
    // vector registers, and the rest is re-read from L1.
    const int channel_vectors = knobs["channel_vectors"] > 0 ? knobs["channel_vectors"] : vector_registers(target) / 8;
    const int block = lanes * channel_vectors;

    s.partial.compute_root().reorder_storage(s.c, s.kw, s.kh, s.row, s.band);
    s.partial.reorder(s.c, s.kw, s.kh, s.row, s.band).parallel(s.band).vectorize(s.c, lanes, tail);

    // Per band and channel block: rows, pixels, taps and blocks of samples; the slots innermost,
    // each adding to one block of its expert's row. Whole channel blocks and one output channel
    // per expert (the usual layer: the row needs no division by F) get their own code; narrower
    // blocks serve the rest.
    Var co("co"), ci("ci");
    auto schedule_sweep = [&](Stage stage, int channels_per_block) {
        stage.split(s.c, co, ci, channels_per_block, tail)
            .reorder(ci, s.p.x, s.p.w, s.kw, s.kh, s.p.y, s.p.z, co, s.band)
            .parallel(s.band)
            .vectorize(ci, lanes)
            .unroll(ci);
    };
    const Expr whole_blocks = s.channels % block == 0;
    Stage sweep = s.partial.update();
    schedule_sweep(sweep.specialize(whole_blocks && s.out_per_expert == 1), block);
    schedule_sweep(sweep.specialize(whole_blocks), block);
    schedule_sweep(sweep, lanes);

    // One slot's channel block, summed over the block's samples in registers.
    s.contribution.compute_at(s.partial, s.p.x);
    for (const Var &v : s.contribution.args()) s.contribution.bound_storage(v, v.same_as(s.c) ? block : 1);
    s.contribution.vectorize(s.c, lanes, tail).unroll(s.c, channel_vectors, tail);
    s.contribution.update()
        .reorder(s.c, s.samples.x)
        .vectorize(s.c, lanes, tail)
        .unroll(s.c, channel_vectors, tail)
        .unroll(s.samples.x);

    // The receptive field of one pixel, tap and block of samples, in fixed-size storage that the
    // compiler keeps in registers across the slots.
    Func field = s.input.in(s.contribution);
    const std::vector<Var> f = field.args();  // (w, h, c, b)
    field.compute_at(s.partial, s.p.w)
        .store_in(MemoryType::Stack)
        .bound_storage(f[0], 1)
        .bound_storage(f[1], 1)
        .bound_storage(f[2], block)
        .bound_storage(f[3], s.block_samples)
        .reorder(f[2], f[3], f[0], f[1])
        .vectorize(f[2], lanes, tail)
        .unroll(f[2], channel_vectors, tail)
        .unroll(f[3]);

    // dŷ and the band's input rows (a channel block) with the samples next to the channels; both
    // are computed over whole blocks of samples, the padding zeros included.
    schedule_samples_innermost(s.gated, lanes, s.block_samples, Internal::const_true(), s.width);
    schedule_block_input(s.input, LoopLevel(s.partial, co), lanes, s.width);
    schedule_band_sum(s.total, s.output, s.c, s.kw, s.kh, s.row, s.t, lanes);
}

}  // namespace smoe
