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
// - The inverse of the routing (slot_of, the groups' running counts and their lists of pixels and
//   dŷ) is made per band.
#include "backward_weight_schedule.h"
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
    // the expert innermost, so that their count bounds the innermost loop.
    schedule_register_tile(s.contribution, tile, s.c, s.kw, LoopLevel(s.partial, taps), {s.c, s.kw, s.kh, s.r.x, s.r.y});

    // The band's inverse of the routing: which experts each pixel selects and the running counts,
    // vectorised over the experts where the loads are contiguous; the lists scattered per pixel
    // from its slots, so that the summing loop reads a pixel and its dŷ per step, no slot lookup.
    s.selects.compute_at(s.partial, s.band).reorder_storage(s.e, s.w, s.h).vectorize(s.e, tile.lanes * 4, tail);
    s.selects.update().unscheduled();  // per pixel its slots, scattered: nothing to vectorise
    s.before.compute_at(s.partial, s.band).vectorize(s.e, tile.lanes * 2, tail);
    s.before.update().reorder(s.e, s.later, s.g, s.h).vectorize(s.e, tile.lanes * 2, tail);
    // Stored, not inlined: the pixel loop's bound is then a plain load, from which Halide proves
    // the loop's predicate, so the loop carries no test and the register tile is never spilled to
    // the stack (ens10-like, JIT: 25.2 -> 22.4 ms).
    s.pixel_count.compute_at(s.partial, s.band).vectorize(s.e, tile.lanes, tail);
    s.list_start.compute_at(s.partial, s.band);
    s.list_start.update().reorder(s.next, s.g, s.h);
    s.group_pixel.compute_at(s.partial, s.band);
    s.group_pixel.update().reorder(s.pick.x, s.pick.y, s.g, s.h);
    s.group_error.compute_at(s.partial, s.band);
    s.group_error.update().reorder(s.b, s.entry.x, s.entry.y, s.entry.z, s.g, s.h);

    schedule_samples_innermost(s.gated, tile.lanes, tile.lanes / 2, s.batch % (tile.lanes / 2) == 0, s.width);
    schedule_block_input(s.input, LoopLevel(s.partial, block), tile.lanes, s.width);
    schedule_band_sum(s.total, s.output, s.c, s.kw, s.kh, s.row, s.t, tile.lanes);
}

}  // namespace smoe
