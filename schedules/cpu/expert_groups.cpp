// CPU schedule of the weight gradient's expert-major order (generator group_pixels > 0, shared
// routing).
//
// Per (group of pixels, kh, expert row) a register tile of a row of taps x a block of
// `channel_vectors` channel vectors sums, over the group's pixels that select the expert and the
// batch, one broadcast dŷ times a vector of the receptive field per accumulator; then it is added
// to the row of the band's partial sum once. The pixel-major order adds to the row once per pixel:
// with few samples that read-modify-write, not the FMAs, sets the pace.
//
// - A task is a band; inside it the channel blocks are outermost, then rows, groups and kh, with
//   the experts innermost: the group's input row for one kh (a block of channels x samples) stays
//   in L1 while every expert visits it, the band's partial rows of the block stay in L2.
// - The inverse of the routing (which experts each pixel selects, the groups' running counts, each
//   slot's list entry, the lists of pixels and dŷ) is made per band.
#include "backward_weight_schedule.h"
#include "expert_lists_cpu.h"
#include "weight_tiles.h"

namespace smoe {

using namespace Halide;

void schedule_expert_groups(ExpertGroupStages &s, const Knobs &knobs, const Target &target) {
    if (target.has_gpu_feature()) {
        throw CompileError("smoe: the weight gradient's expert groups (group_pixels > 0) are scheduled for CPUs only");
    }
    const WeightTile tile = weight_tile(knobs, target, s.total.type());
    const TailStrategy tail = TailStrategy::GuardWithIf;
    // Per band and channel block: rows, groups and kh, the experts innermost.
    Var block, taps;
    schedule_band_blocks(s.partial, tile, s.c, s.kw, s.kh, s.row, s.band, {s.row, s.kh, s.rg.x, s.rg.y}, block, taps);
    // The register tile of one (group, kh, expert row); per sample the group's pixels that select
    // the expert innermost, so that their count bounds the innermost loop. From 8 samples on, per
    // pixel its samples innermost instead: the pixel's field addresses are computed once for the
    // batch, and the innermost loop is one broadcast and the tile's FMAs (AVX2, JIT, with groups
    // of 32: NE/E = 4 at B8 28.0 -> 25.5 ms, cifar B32 45.5 -> 31.0).
    schedule_register_tile(s.contribution, tile, s.c, s.kw, LoopLevel(s.partial, taps), {s.c, s.kw, s.kh, s.r.x, s.r.y});
    s.contribution.update().specialize(s.batch >= kBatchedGroupSamples).reorder(s.r.y, s.r.x);

    // The band's inverse of the routing and its lists.
    schedule_expert_lists(s.lists, LoopLevel(s.partial, s.band), tile.lanes);
    // Each (slot, pixel)'s entry once, vectorised over the slots (gathers), for both scatters.
    s.entry_place.compute_at(s.partial, s.band).vectorize(s.j, tile.lanes, tail);
    s.group_pixel.compute_at(s.partial, s.band);
    s.group_pixel.update().reorder(s.pick.x, s.pick.y, s.g, s.h);
    s.group_error.compute_at(s.partial, s.band);
    // One sample and one output channel per expert (ens10-like) leave no loop per entry.
    s.group_error.update()
        .reorder(s.b, s.entry.x, s.entry.y, s.entry.z, s.g, s.h)
        .specialize(s.batch == 1 && s.out_per_expert == 1);

    schedule_samples_innermost(s.gated, tile.lanes, tile.lanes / 2, s.batch % (tile.lanes / 2) == 0, s.width);
    schedule_block_input(s.input, LoopLevel(s.partial, block), tile.lanes);
    schedule_band_sum(s.total, s.output, s.c, s.kw, s.kh, s.row, s.t, tile.lanes);
}

}  // namespace smoe
