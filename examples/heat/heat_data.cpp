#include "heat_data.h"

#include <ATen/ATen.h>

#include <random>
#include <vector>

namespace smoe::heat {

at::Tensor region_map(const HeatConfig &config) {
    const int64_t n = config.size;
    std::mt19937_64 rng(config.seed);
    std::vector<int64_t> type(n * n, -1);
    std::array<std::vector<int64_t>, kTypes> frontier;
    std::array<int64_t, kTypes> area{};
    auto claim = [&](int64_t cell, int t) {
        type[cell] = t;
        ++area[t];
        const int64_t r = cell / n, c = cell % n;
        const int64_t neighbours[4][2] = {{r - 1, c}, {r + 1, c}, {r, c - 1}, {r, c + 1}};
        for (const auto &[nr, nc] : neighbours) {
            if (nr >= 0 && nr < n && nc >= 0 && nc < n && type[nr * n + nc] < 0) frontier[t].push_back(nr * n + nc);
        }
    };
    std::uniform_int_distribution<int64_t> any_cell(0, n * n - 1);
    for (int t = 0; t < kTypes; ++t) {
        int64_t cell = any_cell(rng);
        while (type[cell] >= 0) cell = any_cell(rng);
        claim(cell, t);
    }
    for (int64_t free = n * n - kTypes; free > 0;) {
        // Drop frontier cells that another type took meanwhile.
        std::array<double, kTypes> weight{};
        for (int t = 0; t < kTypes; ++t) {
            auto &f = frontier[t];
            std::erase_if(f, [&](int64_t cell) { return type[cell] >= 0; });
            weight[t] = f.empty() ? 0.0 : static_cast<double>(area[t]);
        }
        std::discrete_distribution<int> pick_type(weight.begin(), weight.end());
        const int t = pick_type(rng);
        auto &f = frontier[t];
        std::uniform_int_distribution<size_t> pick_cell(0, f.size() - 1);
        const size_t i = pick_cell(rng);
        const int64_t cell = f[i];
        f[i] = f.back();
        f.pop_back();
        if (type[cell] >= 0) continue;
        claim(cell, t);
        --free;
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
        for (int t = 0; t < kTypes; ++t) {
            std::uniform_int_distribution<size_t> where(0, cells[t].size() - 1);
            for (int k = drops(rng); k > 0; --k) values[run * n * n + cells[t][where(rng)]] += 1.0f;
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
