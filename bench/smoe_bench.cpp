// Google Benchmark suite: smoe forward, backward, training step and route_topk against the LibTorch
// baselines on every layer configuration, plus the fp32 GEMM rate the GFLOP/s are compared with.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <benchmark/benchmark.h>

#include <chrono>
#include <sstream>
#include <string>
#include <thread>
#include <utility>

#include "baselines.h"
#include "cpu_memory.h"
#include "instruction_rates.h"
#include "smoe_ops.h"

namespace {

using smoe::bench::kGemmSize;
using smoe::bench::LayerConfig;
using smoe::bench::Method;

// A backward computes two products as large as the forward (grad_x and grad_weight); the gate's
// gradient is negligible.
constexpr double kBackwardFlopsPerForward = 2.0;

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

void forward_benchmark(benchmark::State &state, const LayerConfig &config, Method method, double gemm_gflops) {
    const smoe::bench::LayerInputs in = smoe::bench::make_inputs(config);
    const at::Tensor indices = std::get<0>(smoe::route_topk(in.routing, config.selected));
    const int64_t F = config.outputs_per_expert;
    const auto start = std::chrono::steady_clock::now();
    for (auto _ : state) {
        at::Tensor y;
        switch (method) {
            case Method::smoe: y = smoe::forward(in.x, in.weight, indices, std::nullopt, F); break;
            case Method::naive: y = smoe::bench::naive_forward(in.x, in.weight, indices, F); break;
            case Method::dense_e: y = smoe::bench::dense_e_forward(in.x, in.dense_weight); break;
        }
        benchmark::DoNotOptimize(y);
    }
    set_flop_counters(state, config.flops(), seconds_since(start), gemm_gflops);
}

// The backward alone: the forward runs once, untimed, and its graph is kept, so every iteration is
// exactly the backward autograd runs in training (smoe: one smoe::spatial_moe_backward call for
// all three gradients).
void backward_benchmark(benchmark::State &state, const LayerConfig &config, Method method, double gemm_gflops) {
    const smoe::bench::LayerInputs leaves = smoe::bench::as_leaves(smoe::bench::make_inputs(config));
    const at::Tensor y = smoe::bench::layer_output(method, config, leaves);
    const auto start = std::chrono::steady_clock::now();
    for (auto _ : state) {
        auto gradients = smoe::bench::layer_gradients(method, y, leaves, /*retain_graph=*/true);
        benchmark::DoNotOptimize(gradients);
    }
    set_flop_counters(state, kBackwardFlopsPerForward * config.flops(), seconds_since(start), gemm_gflops);
}

// Forward and backward of one layer, and the CPU memory that needs (measured after the timed loop).
void train_step_benchmark(benchmark::State &state, const LayerConfig &config, Method method, double gemm_gflops) {
    const smoe::bench::LayerInputs leaves = smoe::bench::as_leaves(smoe::bench::make_inputs(config));
    const auto start = std::chrono::steady_clock::now();
    for (auto _ : state) {
        auto gradients = smoe::bench::train_step(method, config, leaves);
        benchmark::DoNotOptimize(gradients);
    }
    set_flop_counters(state, (1.0 + kBackwardFlopsPerForward) * config.flops(), seconds_since(start), gemm_gflops);
    const int64_t peak = smoe::bench::train_step_peak_bytes(method, config, leaves);
    const int64_t naive_peak = smoe::bench::train_step_peak_bytes(Method::naive, config, leaves);
    state.counters["peak_MiB"] = smoe::bench::to_mib(peak);
    state.counters["MiB/naive"] = static_cast<double>(peak) / static_cast<double>(naive_peak);
}

// The tuned kernels (README "Tuning") against the regular ones on the same call, in turn: forward
// or backward of smoe::spatial_moe with tuned kernels off, then on.
void tuned_benchmark(benchmark::State &state, const LayerConfig &config, bool backward, bool tuned) {
    smoe::set_tuned_kernels(tuned);
    const smoe::bench::LayerInputs leaves = smoe::bench::as_leaves(smoe::bench::make_inputs(config));
    const at::Tensor indices = std::get<0>(smoe::route_topk(leaves.routing.detach(), config.selected));
    const at::Tensor y = backward ? smoe::bench::layer_output(Method::smoe, config, leaves) : at::Tensor();
    for (auto _ : state) {
        if (backward) {
            benchmark::DoNotOptimize(smoe::bench::layer_gradients(Method::smoe, y, leaves, /*retain_graph=*/true));
        } else {
            benchmark::DoNotOptimize(
                smoe::forward(leaves.x.detach(), leaves.weight.detach(), indices, std::nullopt, config.outputs_per_expert));
        }
    }
    smoe::set_tuned_kernels(true);
}

// Storage types side by side: smoe's float16/bfloat16 kernels (float32 arithmetic) against its
// float32 ones, and the naive layer in the same type (PyTorch's own half-precision CPU kernels).
// Forward, or the backward alone as in backward_benchmark. `choice`: the kernel choice while it
// runs (the bfloat16 forward's variants side by side).
void precision_benchmark(benchmark::State &state, const LayerConfig &config, Method method, at::ScalarType type,
                         bool backward, const std::string &choice) {
    smoe::set_kernel_variant(choice);
    const smoe::bench::LayerInputs leaves = smoe::bench::as_leaves(smoe::bench::make_inputs(config, 0, type));
    const at::Tensor indices = std::get<0>(smoe::route_topk(leaves.routing.detach(), config.selected));
    const at::Tensor naive_indices = indices.to(at::kLong);
    const at::Tensor y = backward ? smoe::bench::layer_output(method, config, leaves) : at::Tensor();
    const int64_t F = config.outputs_per_expert;
    at::AutoGradMode graph_only_for_backward(backward);
    for (auto _ : state) {
        if (backward) {
            benchmark::DoNotOptimize(smoe::bench::layer_gradients(method, y, leaves, /*retain_graph=*/true));
        } else if (method == Method::smoe) {
            benchmark::DoNotOptimize(smoe::forward(leaves.x, leaves.weight, indices, std::nullopt, F));
        } else {
            benchmark::DoNotOptimize(smoe::bench::naive_forward(leaves.x, leaves.weight, naive_indices, F));
        }
    }
    smoe::set_kernel_variant("auto");
}

// RC loss + damping. The backward with them (smoe: one spatial_moe_backward call; naive: the
// reference's two passes) next to smoe's plain backward, then their two pieces alone.
enum class RCMethod { smoe_plain, smoe_rc_damping, naive_plain, naive_rc_damping };

void rc_backward_benchmark(benchmark::State &state, const LayerConfig &config, RCMethod method) {
    const smoe::bench::LayerInputs leaves = smoe::bench::as_leaves(smoe::bench::make_inputs(config));
    const int64_t E = config.selected, F = config.outputs_per_expert;
    const at::Tensor indices = std::get<0>(smoe::route_topk(leaves.routing.detach(), E));
    const bool naive = method == RCMethod::naive_plain || method == RCMethod::naive_rc_damping;
    const at::Tensor y = naive ? smoe::bench::layer_output(Method::naive, config, leaves) : at::Tensor();
    smoe::BackwardOptions options;
    if (method == RCMethod::smoe_rc_damping) {
        options.rc_loss = true;
        options.quantile = smoe::bench::kRCQuantile;
        options.damping = smoe::bench::kRCDamping;
    }
    for (auto _ : state) {
        if (method == RCMethod::naive_plain) {
            benchmark::DoNotOptimize(smoe::bench::layer_gradients(Method::naive, y, leaves, /*retain_graph=*/true));
        } else if (method == RCMethod::naive_rc_damping) {
            benchmark::DoNotOptimize(smoe::bench::naive_rc_backward(y, config, leaves, /*retain_graph=*/true));
        } else {
            benchmark::DoNotOptimize(smoe::spatial_moe_backward(leaves.grad_y, leaves.x.detach(),
                                                                leaves.weight.detach(), indices, std::nullopt,
                                                                leaves.routing.detach(), F, options,
                                                                {true, true, true}));
        }
    }
}

void error_quantile_benchmark(benchmark::State &state, const LayerConfig &config, bool use_smoe) {
    const at::Tensor dy = smoe::bench::make_inputs(config).grad_y;
    const double scale = static_cast<double>(dy.numel()) / 2.0;
    for (auto _ : state) {
        benchmark::DoNotOptimize(use_smoe ? smoe::error_quantile(dy, std::nullopt, smoe::bench::kRCQuantile, scale)
                                          : smoe::bench::naive_error_quantile(dy, smoe::bench::kRCQuantile, scale));
    }
}

void rc_loss_benchmark(benchmark::State &state, const LayerConfig &config, bool use_smoe) {
    const smoe::bench::LayerInputs in = smoe::bench::make_inputs(config);
    const double scale = static_cast<double>(in.grad_y.numel()) / 2.0;
    const at::Tensor quantile = smoe::error_quantile(in.grad_y, std::nullopt, smoe::bench::kRCQuantile, scale);
    const at::Tensor indices = std::get<0>(smoe::route_topk(in.routing, config.selected));
    const at::Tensor long_indices = indices.to(at::kLong);
    for (auto _ : state) {
        benchmark::DoNotOptimize(
            use_smoe ? smoe::rc_loss(in.grad_y, std::nullopt, indices, in.routing, quantile, scale, 1, 1.0)
                     : smoe::bench::naive_rc_loss(in.grad_y, long_indices, in.routing, quantile, scale));
    }
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

// One core's vector multiply-accumulate rate (GMAC/s): float32 FMA against the bf16 dot product.
void instruction_rate_benchmark(benchmark::State &state, smoe::bench::VectorInstruction instruction) {
    if (!smoe::bench::cpu_has_instruction(instruction)) {
        state.SkipWithError("this CPU lacks the instruction");
        return;
    }
    double seconds = 0;
    long instructions = 0;
    for (auto _ : state) {
        long count = 0;
        seconds += smoe::bench::instruction_seconds(instruction, &count);
        instructions += count;
    }
    state.counters["GMAC/s"] =
        instructions * double(smoe::bench::multiply_accumulates_per_instruction(instruction)) / seconds / 1e9;
}

void register_benchmarks(double gemm_gflops) {
    using smoe::bench::VectorInstruction;
    for (auto [name, instruction] : {std::pair{"isa/fma_f32_zmm", VectorInstruction::fma_f32},
                                     std::pair{"isa/vdpbf16ps_zmm", VectorInstruction::bf16_dot}}) {
        benchmark::RegisterBenchmark(name, instruction_rate_benchmark, instruction)->Unit(benchmark::kMillisecond);
    }
    using LayerBenchmark = void (*)(benchmark::State &, const LayerConfig &, Method, double);
    for (const LayerConfig &config : smoe::bench::layer_configs()) {
        for (auto [kind, run] : {std::pair<const char *, LayerBenchmark>{"forward", forward_benchmark},
                                 std::pair<const char *, LayerBenchmark>{"backward", backward_benchmark},
                                 std::pair<const char *, LayerBenchmark>{"train_step", train_step_benchmark}}) {
            for (Method method : smoe::bench::kMethods) {
                const std::string name = std::string(kind) + "/" + config.name + "/" + smoe::bench::method_name(method);
                benchmark::RegisterBenchmark(name.c_str(), run, config, method, gemm_gflops)
                    ->UseRealTime()
                    ->Unit(benchmark::kMillisecond);
            }
        }
        for (auto [name, method] : {std::pair{"smoe_plain", RCMethod::smoe_plain},
                                    std::pair{"smoe_rc_damping", RCMethod::smoe_rc_damping},
                                    std::pair{"naive_plain", RCMethod::naive_plain},
                                    std::pair{"naive_rc_damping", RCMethod::naive_rc_damping}}) {
            benchmark::RegisterBenchmark(("backward_rc/" + config.name + "/" + name).c_str(), rc_backward_benchmark,
                                         config, method)
                ->UseRealTime()
                ->Unit(benchmark::kMillisecond);
        }
        for (auto [name, use_smoe] : {std::pair{"smoe", true}, std::pair{"naive", false}}) {
            benchmark::RegisterBenchmark(("error_quantile/" + config.name + "/" + name).c_str(),
                                         error_quantile_benchmark, config, use_smoe)
                ->UseRealTime()
                ->Unit(benchmark::kMillisecond);
            benchmark::RegisterBenchmark(("rc_loss/" + config.name + "/" + name).c_str(), rc_loss_benchmark, config,
                                         use_smoe)
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
    for (const LayerConfig &config : smoe::bench::layer_configs()) {
        for (auto [type_name, type] : {std::pair{"f32", at::kFloat}, std::pair{"bf16", at::kBFloat16},
                                       std::pair{"f16", at::kHalf}}) {
            for (bool backward : {false, true}) {
                for (Method method : {Method::smoe, Method::naive}) {
                    const std::string name = "precision/" + config.name + "/" + (backward ? "backward/" : "forward/") +
                                             type_name + "/" + smoe::bench::method_name(method);
                    benchmark::RegisterBenchmark(name.c_str(), precision_benchmark, config, method, type, backward,
                                                 std::string("auto"))
                        ->UseRealTime()
                        ->Unit(benchmark::kMillisecond);
                }
                if (type != at::kBFloat16 || backward) continue;
                // The bfloat16 forward's kernels one by one (the measured choice picks among them).
                std::vector<std::string> kernels = {"regular"};
                for (const std::string &line : smoe::kernel_variants()) {
                    std::istringstream fields(line);
                    std::string op, routing, gating, kernel, params;
                    fields >> op >> routing >> gating >> kernel >> params;
                    if (op == "forward" && routing == "shared" && gating == "unweighted" &&
                        params.find("dtype=bfloat16") == 0) {
                        kernels.push_back(kernel);
                    }
                }
                for (const std::string &kernel : kernels) {
                    const std::string name = "precision/" + config.name + "/forward/bf16/smoe_" + kernel;
                    benchmark::RegisterBenchmark(name.c_str(), precision_benchmark, config, Method::smoe, type, false,
                                                 kernel)
                        ->UseRealTime()
                        ->Unit(benchmark::kMillisecond);
                }
            }
        }
    }
    // Small batches (inference, small training batches): forward and training step against naive.
    for (LayerConfig config : smoe::bench::layer_configs()) {
        for (int64_t batch : {1, 2, 3, 4}) {
            config.batch = batch;
            for (auto [kind, run] : {std::pair<const char *, LayerBenchmark>{"forward", forward_benchmark},
                                     std::pair<const char *, LayerBenchmark>{"train_step", train_step_benchmark}}) {
                for (Method method : {Method::smoe, Method::naive}) {
                    const std::string name = "small_batch/" + config.name + "/b" + std::to_string(batch) + "/" + kind +
                                             "/" + smoe::bench::method_name(method);
                    benchmark::RegisterBenchmark(name.c_str(), run, config, method, gemm_gflops)
                        ->UseRealTime()
                        ->Unit(benchmark::kMillisecond);
                }
            }
        }
    }
    // Tuned against regular kernels, at the layers' batch and at batch 1 (inference).
    for (LayerConfig config : smoe::bench::layer_configs()) {
        for (int64_t batch : {config.batch, int64_t{1}}) {
            config.batch = batch;
            const std::string layer = config.name + (batch == 1 ? "_b1" : "");
            for (bool backward : {false, true}) {
                for (bool tuned : {false, true}) {
                    const std::string name = "tuned/" + layer + "/" + (backward ? "backward/" : "forward/") +
                                             (tuned ? "tuned" : "default");
                    benchmark::RegisterBenchmark(name.c_str(), tuned_benchmark, config, backward, tuned)
                        ->UseRealTime()
                        ->Unit(benchmark::kMillisecond);
                }
            }
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

    // Before any tensor exists, so that every method runs with it and every block is counted.
    smoe::bench::install_cpu_memory_counter();
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
