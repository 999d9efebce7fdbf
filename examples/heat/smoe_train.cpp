// smoe-train: the paper's location-dependent heat diffusion task (DESIGN.md §5), trained with one
// SMoE layer (NE = 3, E = 1, 3×3 experts, shared tensor routing, unweighted) through the compiled
// ops, with the RC loss and damping unless told otherwise. Prints each epoch's loss and
// "% within 1%", a summary, and writes PNGs of the true and learned region maps and stencils.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/optim/adam.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>

#include "heat_data.h"
#include "modules.h"
#include "png_writer.h"

namespace {

using smoe::heat::kTypes;

struct Flags {
    bool rc_loss = true;
    bool damping_on = true;
    double damping = 0.1;
    double quantile = 0.7;
    int64_t epochs = 20;
    int64_t samples = 20000;
    int64_t batch = 32;
    double lr = 1e-3;
    bool lr_decay = true;
    int threads = 0;
    uint64_t seed = 0;
    std::string out = "heat_output";
    std::string device = "cpu";
};

const char *kUsage =
    "usage: smoe-train [--no-rc] [--no-damping] [--damping D] [--quantile Q] [--epochs N] [--samples N]\n"
    "                  [--batch N] [--lr LR] [--no-lr-decay] [--threads N] [--seed S] [--out DIR]\n"
    "                  [--device cpu|cuda]\n";

Flags parse(int argc, char **argv) {
    Flags f;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument("smoe-train: " + a + " needs a value\n" + kUsage);
            return argv[++i];
        };
        if (a == "--no-rc") f.rc_loss = false;
        else if (a == "--no-damping") f.damping_on = false;
        else if (a == "--damping") f.damping = std::stod(value());
        else if (a == "--quantile") f.quantile = std::stod(value());
        else if (a == "--epochs") f.epochs = std::stoll(value());
        else if (a == "--samples") f.samples = std::stoll(value());
        else if (a == "--batch") f.batch = std::stoll(value());
        else if (a == "--lr") f.lr = std::stod(value());
        else if (a == "--no-lr-decay") f.lr_decay = false;
        else if (a == "--threads") f.threads = std::stoi(value());
        else if (a == "--seed") f.seed = std::stoull(value());
        else if (a == "--out") f.out = value();
        else if (a == "--device") f.device = value();
        else if (a == "-h" || a == "--help") {
            std::cout << kUsage;
            std::exit(0);
        } else {
            throw std::invalid_argument("smoe-train: unknown argument '" + a + "'\n" + kUsage);
        }
    }
    if (f.epochs < 1 || f.samples < 100 || f.batch < 1) {
        throw std::invalid_argument("smoe-train: need --epochs >= 1, --samples >= 100 (one run) and --batch >= 1");
    }
    if (f.device != "cpu" && f.device != "cuda") throw std::invalid_argument("smoe-train: --device is cpu or cuda");
    return f;
}

void progress(int64_t epoch, int64_t epochs, int64_t done, int64_t total) {
    constexpr int width = 30;
    const int filled = static_cast<int>(width * done / std::max<int64_t>(total, 1));
    std::fprintf(stderr, "\repoch %3lld/%lld [%s%s] %3d%%", static_cast<long long>(epoch),
                 static_cast<long long>(epochs), std::string(filled, '#').c_str(),
                 std::string(width - filled, '.').c_str(), static_cast<int>(100 * done / std::max<int64_t>(total, 1)));
}

// One colour per region type / expert.
constexpr uint8_t kPalette[kTypes][3] = {{230, 97, 1}, {94, 60, 153}, {27, 158, 119}};

void write_map(const std::string &path, const at::Tensor &map, int scale) {
    const int n = static_cast<int>(map.size(0));
    const at::Tensor m = map.to(at::kLong).contiguous();
    std::vector<uint8_t> rgb(static_cast<size_t>(n * scale) * n * scale * 3);
    for (int y = 0; y < n * scale; ++y) {
        for (int x = 0; x < n * scale; ++x) {
            const int64_t t = m[y / scale][x / scale].item<int64_t>() % kTypes;
            for (int k = 0; k < 3; ++k) rgb[(static_cast<size_t>(y) * n * scale + x) * 3 + k] = kPalette[t][k];
        }
    }
    smoe::heat::write_png(path, n * scale, n * scale, rgb);
}

// Learned stencils (top row) above the true ones (bottom row), each 3×3 cell a grey level over
// the common range, framed in its expert's / type's colour.
void write_stencils(const std::string &path, const at::Tensor &learned, const at::Tensor &truth) {
    constexpr int cell = 24, frame = 4, block = 3 * cell + 2 * frame, gap = 8;
    const int width = kTypes * block + (kTypes + 1) * gap, height = 2 * block + 3 * gap;
    std::vector<uint8_t> rgb(static_cast<size_t>(width) * height * 3, 255);
    const double lo = std::min(learned.min().item<double>(), truth.min().item<double>());
    const double hi = std::max(learned.max().item<double>(), truth.max().item<double>());
    auto paint = [&](int x0, int y0, int w, int h, const uint8_t c[3]) {
        for (int y = y0; y < y0 + h; ++y)
            for (int x = x0; x < x0 + w; ++x)
                for (int k = 0; k < 3; ++k) rgb[(static_cast<size_t>(y) * width + x) * 3 + k] = c[k];
    };
    for (int row = 0; row < 2; ++row) {
        const at::Tensor s = (row == 0 ? learned : truth).to(at::kCPU).contiguous();
        for (int t = 0; t < kTypes; ++t) {
            const int x0 = gap + t * (block + gap), y0 = gap + row * (block + gap);
            paint(x0, y0, block, block, kPalette[t]);
            for (int i = 0; i < 3; ++i) {
                for (int j = 0; j < 3; ++j) {
                    const double v = (s[t][0][i][j].item<double>() - lo) / std::max(hi - lo, 1e-12);
                    const uint8_t g = static_cast<uint8_t>(std::lround(255 * v));
                    const uint8_t grey[3] = {g, g, g};
                    paint(x0 + frame + j * cell, y0 + frame + i * cell, cell, cell, grey);
                }
            }
        }
    }
    smoe::heat::write_png(path, width, height, rgb);
}

}  // namespace

int main(int argc, char **argv) try {
    const Flags flags = parse(argc, argv);
    if (flags.threads > 0) at::set_num_threads(flags.threads);
    if (flags.device == "cuda" && !torch::cuda::is_available()) {
        throw std::invalid_argument("smoe-train: --device cuda, but no CUDA device is available");
    }
    const at::Device device(flags.device == "cuda" ? at::kCUDA : at::kCPU);
    at::manual_seed(static_cast<int64_t>(flags.seed));

    // Data: one region map; training runs and 10% more runs held out for the metric.
    smoe::heat::HeatConfig config;
    config.seed = flags.seed;
    const at::Tensor regions = smoe::heat::region_map(config);
    const int64_t runs = flags.samples / config.steps_per_run;
    const int64_t test_runs = std::max<int64_t>(1, runs / 10);
    auto [train_x, train_y] = smoe::heat::simulate(config, regions, runs);
    smoe::heat::HeatConfig test_config = config;
    test_config.seed = flags.seed + 1000003;
    auto [test_x, test_y] = smoe::heat::simulate(test_config, regions, test_runs);
    train_x = train_x.to(device);
    train_y = train_y.to(device);
    test_x = test_x.to(device);
    test_y = test_y.to(device);
    const int64_t n = train_x.size(0), size = config.size;

    smoe::TensorRoutingGate gate(kTypes, 1, size, size);
    smoe::SpatialMoE2dOptions options(1, 3);
    options.rc_loss(flags.rc_loss).quantile(flags.quantile);
    options.damping(flags.damping_on ? std::optional<double>(flags.damping) : std::nullopt);
    smoe::SpatialMoE2d layer(options, gate);
    gate->to(device);
    layer->to(device);
    std::vector<at::Tensor> parameters = layer->parameters();
    parameters.push_back(gate->routing);
    torch::optim::Adam optimizer(parameters, torch::optim::AdamOptions(flags.lr));

    std::cout << "heat diffusion: " << n << " training samples (" << runs << " runs), " << test_x.size(0)
              << " held out; SMoE NE=3 E=1 3x3, RC loss " << (flags.rc_loss ? "on" : "off") << ", damping "
              << (flags.damping_on ? std::to_string(flags.damping) : std::string("off")) << ", q=" << flags.quantile
              << ", Adam lr " << flags.lr << (flags.lr_decay ? " (halved on plateaus)" : "") << ", batch "
              << flags.batch << ", " << at::get_num_threads() << " threads, " << flags.device << "\n";

    double best_loss = INFINITY, lr = flags.lr, final_within = 0, seconds = 0;
    int64_t stale = 0, epochs_to_99 = -1;
    for (int64_t epoch = 1; epoch <= flags.epochs; ++epoch) {
        const auto start = std::chrono::steady_clock::now();
        const at::Tensor order = at::randperm(n, at::TensorOptions().dtype(at::kLong)).to(device);
        double loss_sum = 0, rc_sum = 0;
        int64_t batches = 0;
        for (int64_t first = 0; first < n; first += flags.batch) {
            const at::Tensor idx = order.narrow(0, first, std::min(flags.batch, n - first));
            optimizer.zero_grad();
            const at::Tensor loss = at::mse_loss(layer->forward(train_x.index_select(0, idx)), train_y.index_select(0, idx));
            loss.backward();
            optimizer.step();
            loss_sum += loss.item<double>();
            rc_sum += layer->last_rc_loss().item<double>();
            ++batches;
            if (batches % 20 == 0) progress(epoch, flags.epochs, first, n);
        }
        seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        at::Tensor prediction;
        {
            at::NoGradGuard no_grad;
            prediction = layer->forward(test_x);
        }
        final_within = smoe::heat::within_one_percent(prediction, test_y);
        if (epochs_to_99 < 0 && final_within >= 0.99) epochs_to_99 = epoch;
        const double mean_loss = loss_sum / static_cast<double>(batches);
        std::fprintf(stderr, "\r%60s\r", "");
        std::printf("epoch %3lld  loss %.3e  rc_loss %.4f  within 1%%: %7.3f%%  lr %.1e  (%.1f s)\n",
                    static_cast<long long>(epoch), mean_loss, rc_sum / static_cast<double>(batches),
                    100 * final_within, lr, seconds / static_cast<double>(epoch));
        std::fflush(stdout);
        // Learning rate halved when the training loss stops improving for two epochs.
        if (mean_loss < best_loss * 0.99) {
            best_loss = mean_loss;
            stale = 0;
        } else if (flags.lr_decay && ++stale >= 2) {
            lr *= 0.5;
            for (auto &group : optimizer.param_groups()) group.options().set_lr(lr);
            stale = 0;
        }
    }

    std::filesystem::create_directories(flags.out);
    const at::Tensor learned_map = gate->routing.detach().to(at::kCPU).argmax(0);
    write_map(flags.out + "/regions_true.png", regions, 6);
    write_map(flags.out + "/regions_learned.png", learned_map, 6);
    write_stencils(flags.out + "/stencils.png", layer->weight.detach().to(at::kCPU), smoe::heat::true_stencils());

    std::printf("summary: final within 1%%: %.3f%%; epochs to reach 99%%: %s; seconds per epoch: %.2f\n",
                100 * final_within, epochs_to_99 > 0 ? std::to_string(epochs_to_99).c_str() : "not reached",
                seconds / static_cast<double>(flags.epochs));
    std::printf("images: %s/regions_true.png, %s/regions_learned.png, %s/stencils.png\n", flags.out.c_str(),
                flags.out.c_str(), flags.out.c_str());
    return 0;
} catch (const std::exception &e) {
    std::cerr << e.what() << "\n";
    return 1;
}
