#include "heat_data.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <array>
#include <random>
#include <vector>

namespace smoe::heat {

at::Tensor region_map(const HeatConfig &config) {
    // Raster order; each point's type is drawn with probabilities that start uniform and shift
    // towards the types of its already-typed 3×3 neighbours (up to 4: the row above and the left).
    constexpr double kBase = 1.0 / kTypes;
    constexpr double kPull = (1.0 - kBase) / 5;     // gain per neighbour of a type
    constexpr double kPush = kPull / (kTypes - 1);  // loss to every other type
    const int64_t n = config.size;
    std::mt19937_64 rng(config.seed);
    std::vector<int64_t> type(n * n, -1);
    for (int64_t r = 0; r < n; ++r) {
        for (int64_t c = 0; c < n; ++c) {
            std::array<double, kTypes> p;
            p.fill(kBase);
            for (int64_t nr = std::max<int64_t>(r - 1, 0); nr <= r; ++nr) {
                for (int64_t nc = std::max<int64_t>(c - 1, 0); nc <= std::min(c + 1, n - 1); ++nc) {
                    const int64_t t = type[nr * n + nc];
                    if (t < 0) continue;
                    for (int k = 0; k < kTypes; ++k) p[k] += k == t ? kPull : -kPush;
                }
            }
            std::discrete_distribution<int64_t> pick(p.begin(), p.end());
            type[r * n + c] = pick(rng);
        }
    }
    return at::tensor(type, at::kLong).view({n, n});
}

at::Tensor true_stencils() {
    at::Tensor stencils = at::zeros({kTypes, 1, 3, 3});
    for (int t = 0; t < kTypes; ++t) {
        const double d = kDiffusivity[t];
        stencils[t][0][0][1] = d;
        stencils[t][0][1][0] = d;
        stencils[t][0][1][2] = d;
        stencils[t][0][2][1] = d;
        stencils[t][0][1][1] = 1 - 4 * d;
    }
    return stencils;
}

at::Tensor diffuse(const at::Tensor &fields, const at::Tensor &regions) {
    // Every type's stencil everywhere (zero padding is the zero boundary), then each point keeps
    // its own type's result.
    const at::Tensor all = at::conv2d(fields, true_stencils().to(fields.scalar_type()), {}, 1, 1);
    return at::gather(all, 1, regions.view({1, 1, regions.size(0), regions.size(1)})
                                  .expand({fields.size(0), 1, -1, -1}));
}

std::pair<at::Tensor, at::Tensor> simulate(const HeatConfig &config, const at::Tensor &regions, int64_t runs) {
    const int64_t n = config.size, steps = config.steps_per_run;
    at::Generator generator = at::detail::createCPUGenerator(config.seed + 1);
    std::mt19937_64 rng(config.seed + 2);
    at::Tensor field = at::rand({runs, 1, n, n}, generator) * 0.1;
    // Unit heat drops: 1–3 per type per run, at random points of that type's region.
    std::array<std::vector<int64_t>, kTypes> cells;
    const at::Tensor flat = regions.flatten().contiguous();
    const int64_t *type = flat.data_ptr<int64_t>();
    for (int64_t i = 0; i < n * n; ++i) cells[type[i]].push_back(i);
    float *values = field.data_ptr<float>();
    std::uniform_int_distribution<int> drops(1, 3);
    for (int64_t run = 0; run < runs; ++run) {
        const int count = drops(rng);
        for (int t = 0; t < kTypes; ++t) {
            if (cells[t].empty()) continue;
            std::uniform_int_distribution<size_t> where(0, cells[t].size() - 1);
            for (int k = 0; k < count; ++k) values[run * n * n + cells[t][where(rng)]] = 1.0f;
        }
    }
    std::vector<at::Tensor> states = {field};
    for (int64_t s = 0; s < steps; ++s) states.push_back(diffuse(states.back(), regions));
    // [runs, steps, 1, n, n] -> [runs·steps, 1, n, n]
    at::Tensor inputs = at::stack(std::vector<at::Tensor>(states.begin(), states.end() - 1), 1).view({-1, 1, n, n});
    at::Tensor targets = at::stack(std::vector<at::Tensor>(states.begin() + 1, states.end()), 1).view({-1, 1, n, n});
    return {inputs.contiguous(), targets.contiguous()};
}

double within_one_percent(const at::Tensor &prediction, const at::Tensor &truth) {
    const at::Tensor ok = (prediction - truth).abs() <= 1e-8 + 0.01 * truth.abs();
    return ok.to(at::kDouble).mean().item<double>();
}

}  // namespace smoe::heat
