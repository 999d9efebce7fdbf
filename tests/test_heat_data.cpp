// The heat-diffusion dataset of the training example: the region map, the location-dependent
// stencil step against a direct evaluation, the metric and the PNG writer.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "heat_data.h"
#include "png_writer.h"

namespace smoe::heat {
namespace {

TEST(HeatData, RegionMapIsSeededAndClustered) {
    HeatConfig config;
    config.seed = 5;
    const at::Tensor map = region_map(config);
    EXPECT_EQ(map.sizes(), at::IntArrayRef({64, 64}));
    EXPECT_TRUE(at::equal(map, region_map(config)));
    for (int t = 0; t < kTypes; ++t) EXPECT_GT((map == t).sum().item<int64_t>(), 0) << "type " << t;
    EXPECT_EQ(((map < 0) | (map >= kTypes)).sum().item<int64_t>(), 0);
    config.seed = 6;
    EXPECT_FALSE(at::equal(map, region_map(config)));
    // Preferential attachment: neighbours agree far more often than independent draws (1/3).
    const double same_right = (map.narrow(1, 0, 63) == map.narrow(1, 1, 63)).to(at::kDouble).mean().item<double>();
    const double same_below = (map.narrow(0, 0, 63) == map.narrow(0, 1, 63)).to(at::kDouble).mean().item<double>();
    EXPECT_GT(same_right, 0.5);
    EXPECT_GT(same_below, 0.5);
}

TEST(HeatData, StepAppliesEachPointsOwnStencilWithZeroBoundary) {
    HeatConfig config;
    config.size = 9;
    const at::Tensor regions = region_map(config);
    const at::Tensor u = at::rand({2, 1, 9, 9});
    const at::Tensor next = diffuse(u, regions);
    auto at_point = [&](int64_t b, int64_t i, int64_t j) {
        auto value = [&](int64_t r, int64_t c) {
            return (r < 0 || r >= 9 || c < 0 || c >= 9) ? 0.0 : u[b][0][r][c].item<double>();
        };
        const double d = kDiffusivity[regions[i][j].item<int64_t>()];
        return (1 - 4 * d) * value(i, j) + d * (value(i - 1, j) + value(i + 1, j) + value(i, j - 1) + value(i, j + 1));
    };
    for (int64_t b = 0; b < 2; ++b)
        for (int64_t i = 0; i < 9; ++i)
            for (int64_t j = 0; j < 9; ++j) EXPECT_NEAR(next[b][0][i][j].item<double>(), at_point(b, i, j), 1e-6);
}

TEST(HeatData, SimulationPairsConsecutiveSteps) {
    HeatConfig config;
    config.size = 16;
    config.steps_per_run = 5;
    const at::Tensor regions = region_map(config);
    auto [inputs, targets] = simulate(config, regions, 3);
    EXPECT_EQ(inputs.sizes(), at::IntArrayRef({15, 1, 16, 16}));
    EXPECT_TRUE(at::allclose(diffuse(inputs, regions), targets));
    // Within a run, the target of step t is the input of step t+1.
    EXPECT_TRUE(at::equal(targets[0], inputs[1]));
    // Every run starts in [0, 0.1] plus unit drops: at least 3 points above 1.
    EXPECT_GE((inputs[0] >= 1.0).sum().item<int64_t>(), 3);
}

TEST(HeatData, WithinOnePercent) {
    const at::Tensor truth = at::tensor({1.0f, 2.0f, 0.0f, -4.0f});
    EXPECT_DOUBLE_EQ(within_one_percent(truth * 1.005, truth), 1.0);
    EXPECT_DOUBLE_EQ(within_one_percent(at::tensor({1.02f, 2.0f, 1e-9f, -4.0f}), truth), 0.75);
}

TEST(PngWriter, WritesAValidSignatureAndHeader) {
    const std::string path = (std::filesystem::temp_directory_path() / "smoe_png_writer_test.png").string();
    write_png(path, 2, 3, std::vector<uint8_t>(2 * 3 * 3, 128));
    std::ifstream file(path, std::ios::binary);
    std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    ASSERT_GT(bytes.size(), 33u);
    EXPECT_EQ(std::vector<unsigned char>(bytes.begin(), bytes.begin() + 8),
              (std::vector<unsigned char>{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'}));
    EXPECT_EQ(std::string(bytes.begin() + 12, bytes.begin() + 16), "IHDR");
    EXPECT_EQ(bytes[19], 2);  // width 2
    EXPECT_EQ(bytes[23], 3);  // height 3
    EXPECT_THROW(write_png(path, 2, 2, std::vector<uint8_t>(5)), std::runtime_error);
    std::filesystem::remove(path);
}

}  // namespace
}  // namespace smoe::heat
