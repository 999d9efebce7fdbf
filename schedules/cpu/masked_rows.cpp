// CPU schedule of the weight gradient's masked rows (generator dense_rows=true, masked_rows=true,
// shared routing).
//
// The dense order's sums (schedules/cpu/dense_rows.cpp) for layers with few channels, experts and
// slots (heat: one channel, three experts, one slot), where channel vectors would be mostly empty
// and the pixel-major orders spend their time on transposes and scatters. The vectors run along
// the grid's rows instead, as NCHW lays them out:
//
// - Tasks are blocks of kBlockSamples samples; each adds lane-wise partial sums, which are then
//   summed in a fixed order (lanes, then blocks): the result does not depend on the thread count.
// - Per task, its samples' dŷ (damped and gated), every expert row's masked dŷ and their
//   zero-padded inputs are computed once for the whole grid (331 KiB at heat, in L2); then per
//   tile of expert rows and per kh a register tile of those rows x K kernel columns sums over the
//   block's grid: per vector of a grid row, one masked dŷ load per row and K input loads feed
//   rows x K FMAs.
#include "backward_weight_schedule.h"

namespace smoe {

using namespace Halide;

namespace {

// Samples per task: 8 tasks at heat's batch of 32 keep two threads evenly busy.
constexpr int kBlockSamples = 4;
// Expert rows per register tile, the first that divides NE·F: with K = 3, 9, 12 or 6 accumulators
// of AVX2's 16 registers, K + rows loads per step.
constexpr int kTileRows[] = {3, 4, 2};

}  // namespace

void schedule_masked_rows(DenseRowStages &s, const Target &target) {
    if (target.has_gpu_feature()) {
        throw CompileError("smoe: the weight gradient's masked rows are scheduled for CPUs only");
    }
    const int lanes = target.natural_vector_size(s.total.type());
    const TailStrategy tail = TailStrategy::GuardWithIf;

    // Blocks of samples, then lanes along the grid's rows, each a partial sum of its own.
    RVar across("across"), lane_of_row("lane_of_row"), block_of("block_of"), in_block("in_block");
    Var lane("lane"), block("block");
    s.total.update()
        .split(s.r.x, across, lane_of_row, lanes, tail)
        .split(s.r.z, block_of, in_block, kBlockSamples, tail);
    Func by_block = s.total.update().rfactor(block_of, block);
    Func by_lane = by_block.update().rfactor(lane_of_row, lane);
    s.total.compute_root();

    // A task per block of samples: their dŷ (damped and gated), every expert row's masked dŷ and
    // their padded inputs, computed once for the whole grid (in L2); then per tile of expert rows and
    // per kh, the lanes' sums of the kernel's columns in registers over the block's grid.
    Var rows_outer("rows_outer"), rows_inner("rows_inner");
    by_block.compute_root().parallel(block);
    by_lane.compute_at(by_block, s.kh).reorder_storage(lane, s.kw, s.row, s.kh, s.c, block).vectorize(lane);
    Stage tasks = by_block.update(), sum = by_lane.update();
    for (const int rows : kTileRows) {
        const Expr tile_fits = s.kernel == 3 && s.rows % rows == 0 && s.width % lanes == 0;
        tasks.specialize(tile_fits)
            .split(s.row, rows_outer, rows_inner, rows, tail)
            .reorder(lane_of_row, s.kw, rows_inner, s.kh, s.c, rows_outer, block)
            .parallel(block);
        // The register tile: K kernel columns x `rows` expert rows, lanes along the grid's row.
        sum.specialize(tile_fits)
            .reorder(lane, s.kw, s.row, across, s.r.y, in_block)
            .vectorize(lane)
            .unroll(s.kw)
            .unroll(s.row);
    }
    tasks.reorder(lane_of_row, s.kw, s.row, s.kh, s.c, block).parallel(block);
    sum.reorder(lane, s.kw, s.row, across, s.r.y, in_block).vectorize(lane);

    const LoopLevel task(by_block, block);
    const std::vector<Var> g = s.gated.args();  // (w, h, jf, b)
    s.gated.compute_at(task).vectorize(g[0], lanes, tail);
    s.row_error.compute_at(task).reorder_storage(s.w, s.h, s.row, s.b).vectorize(s.w, lanes, tail);
    s.row_error.update().reorder(s.w, s.slots, s.h, s.row, s.b).vectorize(s.w, lanes, tail);
    s.channels_last.compute_at(task).reorder_storage(s.w, s.h, s.c, s.b).reorder(s.w, s.h, s.c, s.b).vectorize(
        s.w, lanes, tail);
}

}  // namespace smoe
