// The location-dependent heat diffusion dataset of the paper (DESIGN.md §5), generated in-process:
// a 64×64 map of 3 region types grown by preferential attachment, each type diffusing heat with
// its own 5-point stencil; a sample is one step (field at t, field at t+1).
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>

namespace smoe::heat {

inline constexpr int kTypes = 3;
inline constexpr std::array<double, kTypes> kDiffusivity = {0.25, 0.025, 0.0025};

struct HeatConfig {
    int64_t size = 64;             // grid side
    int64_t steps_per_run = 100;   // samples per run
    uint64_t seed = 0;
};

// [size, size] int64 region types 0..kTypes-1 grown by preferential attachment in raster order:
// a point takes a type with probability 1/kTypes, raised by (1 − 1/kTypes)/5 for each neighbour
// already of that type and lowered by half that for each neighbour of another type.
at::Tensor region_map(const HeatConfig &config);

// The true stencils, [kTypes, 1, 3, 3]: [[0,d,0],[d,1−4d,d],[0,d,0]] for each type's d.
at::Tensor true_stencils();

// One explicit step of the location-dependent diffusion with zero boundary: at each point the
// stencil of its region type. fields [N, 1, H, W] float32.
at::Tensor diffuse(const at::Tensor &fields, const at::Tensor &regions);

// `runs` runs of steps_per_run steps on `regions`, each from a random field uniform in [0, 0.1]
// with unit heat drops: per run a count in 1–3, and that many random points of every type's region
// set to 1. Returns (inputs, targets), [runs·steps, 1, H, W]
// float32: the field at t and at t+1.
std::pair<at::Tensor, at::Tensor> simulate(const HeatConfig &config, const at::Tensor &regions, int64_t runs);

// Share of points whose prediction p is within 1% of the truth t: |p − t| <= 1e-8 + 0.01·|t|.
double within_one_percent(const at::Tensor &prediction, const at::Tensor &truth);

}  // namespace smoe::heat
