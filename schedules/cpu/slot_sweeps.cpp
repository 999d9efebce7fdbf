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
// - The channel blocks are the outermost loop of a band's task, then the taps (knob tap_order): the
//   band's partial rows of one block and tap and its channel-innermost input rows stay in L2 while
//   the band's pixels are visited.
// - The partial rows of 128 float32 channels sit 9 x 512 B apart, so experts 8 apart share their
//   4 KiB offset and L1 sets, and a slot's row load waits on an unrelated store. Channels padded to
//   a multiple of 48 (144 for 128) break that (knob row_padding): measured 14% on AVX-512 float32
//   at C = 128, nothing at C = 64, a loss with bf16 pairs and on AVX2, so only the first is padded.
// - On AVX-512 each sample's product goes straight into the row (knob sum_into_rows): the row is
//   loaded, takes one FMA per sample in order and is stored, with no sum of the block apart and no
//   add after it. AVX2 keeps the block's sum (slot_sweeps_sum_into_rows says why).
// - Bands are summed last, in band order, vectorised over channels: deterministic, whatever the
//   number of threads.
// - bf16_pairs (bfloat16 on CPUs with bf16 dot products): the field holds pairs of samples next to
//   each other per channel, so one dot-product instruction adds two samples' products for 16
//   channels (schedule_pair_operands).
#include "backward_weight_schedule.h"
#include "weight_tiles.h"

namespace smoe {

using namespace Halide;

namespace {

// The receptive field of one pixel, tap and block of samples, computed per block of samples into
// fixed-size storage (extents by dimension) that the compiler keeps in registers across the slots.
void hold_field(Func field, const SlotSweepStages &s, const std::vector<int> &extents) {
    field.compute_at(s.partial, s.p.w).store_in(MemoryType::Stack);
    const std::vector<Var> dims = field.args();
    for (size_t i = 0; i < dims.size(); i++) field.bound_storage(dims[i], extents[i]);
}

// bf16_pairs: each step of a slot's sum is one bf16 dot-product instruction, lane u adding the
// products of channel u with a pair of samples: 16 channels x 2 samples of the field (one vector of
// 32 bfloat16, the pair next to each other) against the pair's two dŷ (one 32-bit broadcast). The
// channels run in whole vectors, zero past C, so that no step has a tail.
void schedule_pair_operands(SlotSweepStages &s, const LoopLevel &block_level, int lanes, int channel_vectors) {
    const TailStrategy tail = TailStrategy::GuardWithIf, whole = TailStrategy::RoundUp;
    const int block = lanes * channel_vectors;
    const RVar member = s.samples.x, pair = s.samples.y;
    s.contribution.vectorize(s.c, lanes, whole).unroll(s.c, channel_vectors, tail);
    s.contribution.update()
        .reorder(member, s.c, pair)
        .atomic()
        .vectorize(member)
        .vectorize(s.c, lanes, whole)
        .unroll(s.c, channel_vectors, tail)
        .unroll(pair);

    // The field with pairs innermost, then channels.
    Func field = s.input_pairs.in(s.contribution);
    const std::vector<Var> f = field.args();  // (member, c, w, h, pair)
    hold_field(field, s, {2, block, 1, 1, s.block_samples / 2});
    field.reorder(f[0], f[1], f[4], f[2], f[3])
        .vectorize(f[0], 2)
        .vectorize(f[1], lanes, whole)
        .unroll(f[1], channel_vectors, tail)
        .unroll(f[4]);

    // The band's input rows of a channel block in the same order, from x as it is.
    const std::vector<Var> in = s.input_pairs.args();
    s.input_pairs.compute_at(block_level)
        .reorder_storage(in[0], in[1], in[4], in[2], in[3])
        .reorder(in[0], in[1], in[4], in[2], in[3])
        .vectorize(in[0], 2)
        .vectorize(in[1], lanes, tail);
}

}  // namespace

bool slot_sweeps_sum_into_rows(const Knobs &knobs, bool bf16_pairs, const Target &target) {
    // The row loaded, one FMA per sample and stored, instead of the samples summed apart and then a
    // load, an add and a store: 32 instead of 36 vector operations per slot at 4 channel vectors x
    // 8 samples. JIT, medians of 5: AVX-512 (Intel Xeon family 6 model 207) weatherbench B8
    // 21.3 -> 20.7 ms, NE/E = 4 12.1 -> 11.8, cifar 13.0 -> 12.6, bfloat16 storage 21.2 -> 20.7;
    // AVX2 on the same CPU weatherbench 37.8 -> 41.1 (cifar 20.5 -> 19.6), so AVX-512 only.
    // bf16 pairs sum their pairs' dot products apart.
    return !bf16_pairs && knobs.on("sum_into_rows", target.has_feature(Target::AVX512));
}

int slot_sweep_samples(const Knobs &knobs) {
    // 8 samples per block on AVX-512 and AVX2 alike: on AVX2, 4 (a register's worth of dŷ
    // broadcasts) re-read each slot's row twice as often (AVX2, JIT, weatherbench, 4 channel
    // vectors: 55.5 against 35.0 ms).
    return knobs["sample_block"] > 0 ? knobs["sample_block"] : 8;
}

void schedule_slot_sweeps(SlotSweepStages &s, const Knobs &knobs, const Target &target) {
    if (target.has_gpu_feature()) {
        throw CompileError("smoe: the weight gradient's slot sweeps (formulation=2) are scheduled for CPUs only");
    }
    const TailStrategy tail = TailStrategy::GuardWithIf;
    // The tap tiles' block of channel vectors, 4 by default (64 channels on AVX-512, 32 on AVX2):
    // with 8 samples the field fills the vector registers and the rest is re-read from L1. AVX2,
    // JIT, weatherbench / cifar: 4 vectors x 8 samples 35.0 / 20.2 ms, against 55.5 / 39.3 with
    // 2 x 4 and 59-62 / 38 regular.
    const WeightTile tile = weight_tile(knobs, target, s.total.type());
    const int lanes = tile.lanes, channel_vectors = tile.channel_vectors, block = tile.block;

    s.partial.compute_root().reorder_storage(s.c, s.kw, s.kh, s.row, s.band);
    const bool pad_rows = knobs.on("row_padding", target.has_feature(Target::AVX512) && !s.bf16_pairs);
    if (pad_rows) s.partial.align_storage(s.c, 48);
    s.partial.reorder(s.c, s.kw, s.kh, s.row, s.band).parallel(s.band).vectorize(s.c, lanes, tail);

    // Per band and channel block: taps, rows, pixels and blocks of samples (or rows, pixels, taps
    // and blocks); the slots innermost, each adding to one block of its expert's row (summed into
    // the rows: the block's samples within the slot, unrolled). Whole channel blocks and one output
    // channel per expert (the usual layer: the row needs no division by F) get their own code;
    // narrower blocks serve the rest.
    Var co("co"), ci("ci");
    auto schedule_sweep = [&](Stage stage, int channels_per_block) {
        stage.split(s.c, co, ci, channels_per_block, tail);
        std::vector<VarOrRVar> order = {ci};
        if (s.into_rows) order.push_back(s.p[4]);
        if (knobs["tap_order"] == 1) {
            order.insert(order.end(), {s.p.x, s.p.w, s.p.y, s.p.z, s.kw, s.kh, co, s.band});
        } else {
            order.insert(order.end(), {s.p.x, s.p.w, s.kw, s.kh, s.p.y, s.p.z, co, s.band});
        }
        stage.reorder(order).parallel(s.band).vectorize(ci, lanes).unroll(ci);
        if (s.into_rows) stage.unroll(s.p[4]);
    };
    const Expr whole_blocks = s.channels % block == 0;
    Stage sweep = s.partial.update();
    schedule_sweep(sweep.specialize(whole_blocks && s.out_per_expert == 1), block);
    schedule_sweep(sweep.specialize(whole_blocks), block);
    schedule_sweep(sweep, lanes);

    if (!s.into_rows) {
        // One slot's channel block, summed over the block's samples in registers.
        s.contribution.compute_at(s.partial, s.p.x);
        for (const Var &v : s.contribution.args()) s.contribution.bound_storage(v, v.same_as(s.c) ? block : 1);
    }
    if (s.bf16_pairs) {
        schedule_pair_operands(s, LoopLevel(s.partial, co), lanes, channel_vectors);
    } else {
        Func field;
        if (s.into_rows) {
            field = s.input.in(s.partial);
        } else {
            s.contribution.vectorize(s.c, lanes, tail).unroll(s.c, channel_vectors, tail);
            s.contribution.update()
                .reorder(s.c, s.samples.x)
                .vectorize(s.c, lanes, tail)
                .unroll(s.c, channel_vectors, tail)
                .unroll(s.samples.x);
            field = s.input.in(s.contribution);
        }

        // The field with channels innermost, then samples.
        const std::vector<Var> f = field.args();  // (w, h, c, b)
        hold_field(field, s, {1, 1, block, s.block_samples});
        field.reorder(f[2], f[3], f[0], f[1])
            .vectorize(f[2], lanes, tail)
            .unroll(f[2], channel_vectors, tail)
            .unroll(f[3]);
        // The band's input rows (a channel block) with the samples next to the channels.
        schedule_block_input(s.input, LoopLevel(s.partial, co), lanes);
    }

    // dŷ with the samples innermost, computed over whole blocks of samples, the padding zeros
    // included.
    schedule_samples_innermost(s.gated, lanes, s.block_samples, Internal::const_true(), s.width);
    schedule_band_sum(s.total, s.output, s.c, s.kw, s.kh, s.row, s.t, lanes);
}

}  // namespace smoe
