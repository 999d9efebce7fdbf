#include "heat_images.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "heat_data.h"
#include "png_writer.h"

namespace smoe::heat {
namespace {

constexpr uint8_t kPalette[kTypes][3] = {{230, 97, 1}, {94, 60, 153}, {27, 158, 119}};
constexpr int kMapScale = 6;  // pixels per grid point

std::string shape_text(at::IntArrayRef sizes) {
    std::string s = "[";
    for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
    return s + "]";
}

void check_model(const at::Tensor &routing, const at::Tensor &weight) {
    if (weight.dim() != 4 || weight.size(0) != kTypes || weight.size(1) != 1 || weight.size(2) != 3 ||
        weight.size(3) != 3) {
        throw std::invalid_argument("heat images: weight must be [3, 1, 3, 3], got " + shape_text(weight.sizes()));
    }
    if (routing.dim() != 3 || routing.size(0) != kTypes) {
        throw std::invalid_argument("heat images: routing must be [3, H, W], got " + shape_text(routing.sizes()));
    }
}

void write_map(const std::string &path, const at::Tensor &types) {
    const int n = static_cast<int>(types.size(0)), side = n * kMapScale;
    const at::Tensor t = types.to(at::kCPU, at::kLong).contiguous();
    const int64_t *type = t.data_ptr<int64_t>();
    std::vector<uint8_t> rgb(static_cast<size_t>(side) * side * 3);
    for (int y = 0; y < side; ++y) {
        for (int x = 0; x < side; ++x) {
            const int64_t k = type[(y / kMapScale) * n + x / kMapScale];
            std::copy_n(kPalette[k], 3, &rgb[(static_cast<size_t>(y) * side + x) * 3]);
        }
    }
    write_png(path, side, side, rgb);
}

// Learned stencils (top row, each under its matched type's colour) above the true ones (bottom
// row); each 3×3 cell is a grey level over the common range.
void write_stencils(const std::string &path, const at::Tensor &learned, const std::vector<int64_t> &type_of) {
    constexpr int cell = 24, frame = 4, block = 3 * cell + 2 * frame, gap = 8;
    const int width = kTypes * block + (kTypes + 1) * gap, height = 2 * block + 3 * gap;
    const at::Tensor truth = true_stencils();
    std::vector<uint8_t> rgb(static_cast<size_t>(width) * height * 3, 255);
    const double lo = std::min(learned.min().item<double>(), truth.min().item<double>());
    const double hi = std::max(learned.max().item<double>(), truth.max().item<double>());
    auto paint = [&](int x0, int y0, int w, int h, const uint8_t c[3]) {
        for (int y = y0; y < y0 + h; ++y)
            for (int x = x0; x < x0 + w; ++x) std::copy_n(c, 3, &rgb[(static_cast<size_t>(y) * width + x) * 3]);
    };
    auto draw = [&](const at::Tensor &stencil, int column, int row, int64_t type) {
        const at::Tensor s = stencil.to(at::kCPU, at::kDouble).contiguous();
        const int x0 = gap + column * (block + gap), y0 = gap + row * (block + gap);
        paint(x0, y0, block, block, kPalette[type]);
        for (int i = 0; i < 3; ++i) {
            for (int j = 0; j < 3; ++j) {
                const double v = (s[0][i][j].item<double>() - lo) / std::max(hi - lo, 1e-12);
                const uint8_t g = static_cast<uint8_t>(std::lround(255 * std::clamp(v, 0.0, 1.0)));
                const uint8_t grey[3] = {g, g, g};
                paint(x0 + frame + j * cell, y0 + frame + i * cell, cell, cell, grey);
            }
        }
    };
    // Experts sorted by matched type so that each sits above its type's true stencil.
    std::vector<int64_t> order(kTypes);
    for (int e = 0; e < kTypes; ++e) order[e] = e;
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return type_of[a] < type_of[b]; });
    for (int c = 0; c < kTypes; ++c) {
        draw(learned[order[c]], c, 0, type_of[order[c]]);
        draw(truth[c], c, 1, c);
    }
    write_png(path, width, height, rgb);
}

at::Tensor learned_types(const at::Tensor &routing, const std::vector<int64_t> &type_of) {
    return at::tensor(type_of, at::kLong).index_select(0, routing.detach().to(at::kCPU).argmax(0).flatten())
        .view({routing.size(1), routing.size(2)});
}

}  // namespace

std::vector<int64_t> match_experts_to_types(const at::Tensor &weight) {
    const at::Tensor w = weight.detach().to(at::kCPU, at::kDouble).reshape({weight.size(0), -1});
    const at::Tensor truth = true_stencils().to(at::kDouble).reshape({kTypes, -1});
    const at::Tensor nearest = at::cdist(w, truth).argmin(1).contiguous();
    return std::vector<int64_t>(nearest.data_ptr<int64_t>(), nearest.data_ptr<int64_t>() + nearest.numel());
}

double routing_agreement(const at::Tensor &regions, const at::Tensor &routing, const at::Tensor &weight) {
    check_model(routing, weight);
    const at::Tensor learned = learned_types(routing, match_experts_to_types(weight));
    return (learned == regions.to(at::kCPU, at::kLong)).to(at::kDouble).mean().item<double>();
}

std::vector<std::string> write_images(const std::string &out, const at::Tensor &regions, const at::Tensor &routing,
                                      const at::Tensor &weight) {
    check_model(routing, weight);
    std::filesystem::create_directories(out);
    const std::vector<int64_t> type_of = match_experts_to_types(weight);
    const std::vector<std::string> paths = {out + "/regions_true.png", out + "/regions_learned.png",
                                            out + "/stencils.png"};
    write_map(paths[0], regions);
    write_map(paths[1], learned_types(routing, type_of));
    write_stencils(paths[2], weight.detach(), type_of);
    return paths;
}

}  // namespace smoe::heat
