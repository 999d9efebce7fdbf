// Layer shapes the suites sweep: named edge cases plus seeded random configurations.
#pragma once

#include <ATen/ATen.h>

#include <ostream>
#include <random>
#include <vector>

namespace smoe::testing {

struct LayerConfig {
    int64_t B, C, H, W, NE, E, K, F;
    bool shared_routing;
    bool weighted;
    at::ScalarType dtype = at::kFloat;
};

inline std::ostream &operator<<(std::ostream &out, const LayerConfig &c) {
    return out << "B" << c.B << "_C" << c.C << "_H" << c.H << "_W" << c.W << "_NE" << c.NE << "_E" << c.E << "_K" << c.K
               << "_F" << c.F << (c.shared_routing ? "_shared" : "_per_sample") << (c.weighted ? "_weighted" : "")
               << (c.dtype == at::kDouble ? "_f64" : "_f32");
}

// Edge shapes first (B=1, C=1, H or W smaller than K, NE=E, NE=E+1, F=2, K=1/5/7, weighted,
// per-sample, float64), then `random_count` random ones from a fixed seed.
inline std::vector<LayerConfig> layer_configs(int random_count) {
    std::vector<LayerConfig> configs = {
        {1, 3, 6, 7, 4, 2, 3, 1, true, false},
        {2, 1, 5, 5, 3, 1, 3, 1, true, false},
        {2, 2, 2, 9, 4, 2, 5, 1, true, false},   // H < K
        {3, 2, 8, 1, 4, 3, 3, 1, true, false},   // W < K
        {2, 3, 1, 1, 5, 2, 7, 1, false, false},  // single pixel, K = 7
        {2, 3, 5, 6, 4, 4, 3, 1, true, false},   // NE = E
        {2, 3, 5, 6, 5, 4, 3, 1, false, true},   // NE = E + 1
        {3, 4, 6, 5, 4, 2, 3, 2, true, false},   // F = 2
        {2, 4, 6, 5, 3, 2, 1, 2, false, true},   // K = 1, F = 2
        {2, 3, 9, 8, 6, 3, 5, 1, true, true},    // K = 5, weighted
        {4, 2, 10, 9, 6, 3, 7, 1, false, false}, // K = 7, per-sample
        {16, 8, 12, 10, 16, 13, 3, 1, true, false},  // full register tiles plus tails
        {9, 5, 7, 11, 20, 14, 3, 3, true, true},
        // One to three samples on rows wider than a vector of pixels (their batch-size specialisations)
        {1, 20, 3, 35, 6, 3, 3, 1, true, false},
        {2, 7, 4, 17, 5, 2, 3, 1, false, false},
        {3, 6, 3, 18, 6, 4, 3, 2, true, true},
        {2, 3, 5, 6, 4, 2, 3, 2, true, true, at::kDouble},
        {3, 2, 4, 7, 5, 3, 5, 1, false, true, at::kDouble},
    };
    std::mt19937 rng(20221128);
    auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
    const int64_t kernel_sizes[] = {1, 3, 5, 7};
    for (int i = 0; i < random_count; ++i) {
        LayerConfig c{};
        c.B = pick(1, 20);
        c.C = pick(1, 12);
        c.H = pick(1, 14);
        c.W = pick(1, 14);
        c.NE = pick(1, 24);
        c.E = pick(1, c.NE);
        c.K = kernel_sizes[pick(0, 3)];
        c.F = pick(1, 3);
        c.shared_routing = pick(0, 2) != 0;
        c.weighted = pick(0, 1) != 0;
        c.dtype = pick(0, 4) == 0 ? at::kDouble : at::kFloat;
        configs.push_back(c);
    }
    return configs;
}

struct LayerTensors {
    at::Tensor x, weight, routing;
};

inline LayerTensors random_layer(const LayerConfig &c, uint64_t seed) {
    at::manual_seed(seed);
    const auto options = at::TensorOptions().dtype(c.dtype);
    LayerTensors t;
    t.x = at::randn({c.B, c.C, c.H, c.W}, options);
    t.weight = at::randn({c.NE * c.F, c.C, c.K, c.K}, options);
    t.routing = c.shared_routing ? at::randn({c.NE, c.H, c.W}, options) : at::randn({c.B, c.NE, c.H, c.W}, options);
    return t;
}

}  // namespace smoe::testing
