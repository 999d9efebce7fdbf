// Named schedule knobs shared by the generators; 0 means "the target's default".
#pragma once

namespace smoe {

struct TileKnobs {
    int accumulators;   // CPU: vector registers per register tile; GPU: batch samples per thread
    int batch_vectors;  // CPU: widest register tile, in batch vectors
    int row_tile;       // grid rows per parallel task (CPU) / per thread block (GPU)
};

}  // namespace smoe
