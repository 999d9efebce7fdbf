// Google Benchmark suite: smoe forward and route_topk against the LibTorch baselines on every layer
// configuration, plus the fp32 GEMM rate the forwards' GFLOP/s are compared with.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>

#include <chrono>
#include <string>
#include <thread>
#include <utility>

#include "baselines.h"
#include "smoe_ops.h"

namespace {

using smoe::bench::kGemmSize;
using smoe::bench::LayerConfig;

enum class ForwardMethod { smoe, naive, dense_e };

// GFLOP/s and its percentage of the GEMM rate over `seconds` of wall time, set as plain numbers so
// that the console shows them as they are (rate counters would print "/s" after the percentage).
void set_flop_counters(benchmark::State &state, double flops_per_iteration, double seconds, double gemm_gflops) {
    const double gflops = flops_per_iteration * static_cast<double>(state.iterations()) / seconds * 1e-9;
    state.counters["GFLOP/s"] = gflops;
    state.counters["%GEMM"] = 100.0 * gflops / gemm_gflops;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void forward_benchmark(benchmark::State &state, const LayerConfig &config, ForwardMethod method,
                       double gemm_gflops) {
    const smoe::bench::LayerInputs in = smoe::bench::make_inputs(config);
    const at::Tensor indices = std::get<0>(smoe::route_topk(in.routing, config.selected));
    const int64_t F = config.outputs_per_expert;
    const auto start = std::chrono::steady_clock::now();
    for (auto _ : state) {
        at::Tensor y;
        switch (method) {
            case ForwardMethod::smoe: y = smoe::forward(in.x, in.weight, indices, std::nullopt, F); break;
            case ForwardMethod::naive: y = smoe::bench::naive_forward(in.x, in.weight, indices, F); break;
            case ForwardMethod::dense_e: y = smoe::bench::dense_e_forward(in.x, in.dense_weight); break;
        }
        benchmark::DoNotOptimize(y);
    }
    set_flop_counters(state, config.flops(), seconds_since(start), gemm_gflops);
}

void route_topk_benchmark(benchmark::State &state, const LayerConfig &config, bool use_smoe) {
    const at::Tensor routing = smoe::bench::make_inputs(config).routing;
    for (auto _ : state) {
        auto result = use_smoe ? smoe::route_topk(routing, config.selected)
                               : smoe::bench::naive_route_topk(routing, config.selected);
        benchmark::DoNotOptimize(result);
    }
}

void gemm_benchmark(benchmark::State &state, double gemm_gflops) {
    at::manual_seed(0);
    const at::Tensor a = at::randn({kGemmSize, kGemmSize}), b = at::randn({kGemmSize, kGemmSize});
    at::Tensor c = at::empty({kGemmSize, kGemmSize});
    const auto start = std::chrono::steady_clock::now();
    for (auto _ : state) {
        at::mm_out(c, a, b);
        benchmark::DoNotOptimize(c);
    }
    set_flop_counters(state, smoe::bench::gemm_flops(kGemmSize), seconds_since(start), gemm_gflops);
}

void register_benchmarks(double gemm_gflops) {
    for (const LayerConfig &config : smoe::bench::layer_configs()) {
        const std::string forward = "forward/" + config.name + "/";
        for (auto [name, method] : {std::pair{"smoe", ForwardMethod::smoe}, std::pair{"naive", ForwardMethod::naive},
                                    std::pair{"dense_e", ForwardMethod::dense_e}}) {
            benchmark::RegisterBenchmark((forward + name).c_str(), forward_benchmark, config, method, gemm_gflops)
                ->UseRealTime()
                ->Unit(benchmark::kMillisecond);
        }
        const std::string route = "route_topk/" + config.name + "/";
        for (auto [name, use_smoe] : {std::pair{"smoe", true}, std::pair{"torch_topk", false}}) {
            benchmark::RegisterBenchmark((route + name).c_str(), route_topk_benchmark, config, use_smoe)
                ->UseRealTime()
                ->Unit(benchmark::kMicrosecond);
        }
    }
    benchmark::RegisterBenchmark(("gemm/" + std::to_string(kGemmSize)).c_str(), gemm_benchmark, gemm_gflops)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char **argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

    // Every method runs on the same threads; smoe sizes Halide's pool from at::get_num_threads().
    at::set_num_threads(static_cast<int>(std::thread::hardware_concurrency()));
    // The %GEMM counters need the rate before any benchmark runs; gemm/2048 re-measures it in the table.
    const double gemm_gflops = smoe::bench::measure_gemm_gflops(kGemmSize);
    benchmark::AddCustomContext("threads", std::to_string(at::get_num_threads()));
    benchmark::AddCustomContext("fp32_gemm_gflops", std::to_string(gemm_gflops));

    register_benchmarks(gemm_gflops);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
