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

#include "weight_tiles.h"

namespace smoe {

using namespace Halide;

void schedule_tap_tiles_cpu(BackwardWeightStages &s, const Knobs &knobs, const Target &target) {
    const WeightTile tile = weight_tile(knobs, target, s.total.type());
    // Per band and channel block, its pixels in order; per (pixel, slot, kh) a row of taps.
    Var block, taps;
    schedule_band_blocks(s.partial, tile, s.c, s.kw, s.kh, s.row, s.band, {s.kh, s.p.x, s.p.y, s.p.z}, block, taps);
    // The register tile of one (pixel, slot, kh), summed over the batch.
    schedule_register_tile(s.contribution, tile, s.c, s.kw, LoopLevel(s.partial, taps), {s.c, s.kw, s.kh, s.rb});
    schedule_samples_innermost(s.gated, tile.lanes, tile.lanes / 2, s.batch % (tile.lanes / 2) == 0, s.width);
    schedule_block_input(s.input, LoopLevel(s.partial, block), tile.lanes);
    schedule_band_sum(s.total, s.output, s.c, s.kw, s.kh, s.row, s.t, tile.lanes);
}

}  // namespace smoe
