// The heat-diffusion dataset and pictures as torch.ops.smoe_heat.*, so that the Python training
// scripts use the very generator and images of smoe-train (build/lib/libsmoe_heat.so).
#include <torch/library.h>

#include "heat_data.h"
#include "heat_images.h"

namespace {

smoe::heat::HeatConfig config_of(int64_t seed, int64_t size, int64_t steps) {
    if (size < 3) throw std::invalid_argument("smoe_heat: size must be >= 3, got " + std::to_string(size));
    if (steps < 1) throw std::invalid_argument("smoe_heat: steps must be >= 1, got " + std::to_string(steps));
    if (seed < 0) throw std::invalid_argument("smoe_heat: seed must be >= 0, got " + std::to_string(seed));
    smoe::heat::HeatConfig config;
    config.seed = static_cast<uint64_t>(seed);
    config.size = size;
    config.steps_per_run = steps;
    return config;
}

at::Tensor region_map(int64_t seed, int64_t size) { return smoe::heat::region_map(config_of(seed, size, 1)); }

std::tuple<at::Tensor, at::Tensor> simulate(const at::Tensor &regions, int64_t runs, int64_t seed, int64_t steps) {
    if (regions.dim() != 2 || regions.size(0) != regions.size(1) || regions.scalar_type() != at::kLong) {
        throw std::invalid_argument("smoe_heat.simulate: regions must be a square int64 map from region_map");
    }
    if (runs < 1) throw std::invalid_argument("smoe_heat.simulate: runs must be >= 1, got " + std::to_string(runs));
    auto [x, y] = smoe::heat::simulate(config_of(seed, regions.size(0), steps), regions, runs);
    return {x, y};
}

}  // namespace

TORCH_LIBRARY(smoe_heat, m) {
    m.def("region_map(int seed, int size=64) -> Tensor", region_map);
    m.def("simulate(Tensor regions, int runs, int seed, int steps=100) -> (Tensor inputs, Tensor targets)", simulate);
    m.def("within_one_percent(Tensor prediction, Tensor truth) -> float", smoe::heat::within_one_percent);
    m.def("routing_agreement(Tensor regions, Tensor routing, Tensor weight) -> float", smoe::heat::routing_agreement);
    m.def("write_images(str out, Tensor regions, Tensor routing, Tensor weight) -> str[]", smoe::heat::write_images);
}
