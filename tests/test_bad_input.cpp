// Every bad input is refused with a c10::Error that names the operator, the argument and what was
// expected; errors raised inside a Halide kernel arrive as c10::Error with Halide's message.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "halide_call.h"
#include "kernel_registry.h"
#include "smoe_ops.h"
#include "tensor_buffer.h"

namespace smoe {
namespace {

// Runs `call` and returns the c10::Error message it threw ("" if it did not throw).
template <typename Call>
std::string error_of(Call call) {
    try {
        call();
    } catch (const c10::Error &e) {
        return e.what_without_backtrace();
    }
    return "";
}

#define EXPECT_ERROR(call, ...)                                                     \
    do {                                                                            \
        const std::string message = error_of([&] { (void)(call); });                \
        ASSERT_FALSE(message.empty()) << #call " did not throw";                    \
        for (const char *part : {__VA_ARGS__}) {                                    \
            EXPECT_NE(message.find(part), std::string::npos)                        \
                << #call ": message lacks \"" << part << "\":\n" << message;        \
        }                                                                           \
    } while (0)

struct ValidForward {
    at::Tensor x = at::randn({2, 3, 5, 6});
    at::Tensor weight = at::randn({4, 3, 3, 3});
    at::Tensor indices = at::randint(0, 4, {2, 5, 6}, at::kInt);
    at::Tensor values = at::randn({2, 5, 6});
};

TEST(ForwardBadInput, ValidArgumentsPass) {
    ValidForward v;
    EXPECT_EQ(error_of([&] { smoe::forward(v.x, v.weight, v.indices, v.values, 1); }), "");
}

TEST(ForwardBadInput, WrongRank) {
    ValidForward v;
    EXPECT_ERROR(smoe::forward(v.x[0], v.weight, v.indices), "smoe::forward", "'x'", "[B, C, H, W]", "3-d");
    EXPECT_ERROR(smoe::forward(v.x, v.weight[0], v.indices), "'weight'", "[NE*F, C, K, K]");
    EXPECT_ERROR(smoe::forward(v.x, v.weight, v.indices[0]), "'indices'", "[E, H, W]", "[B, E, H, W]");
    EXPECT_ERROR(smoe::forward(v.x, v.weight, v.indices, v.values[0]), "'values'", "shape of 'indices'");
}

TEST(ForwardBadInput, ShapesMustAgree) {
    ValidForward v;
    EXPECT_ERROR(smoe::forward(v.x, at::randn({4, 2, 3, 3}), v.indices), "'weight'", "x.size(1) (C)");
    EXPECT_ERROR(smoe::forward(v.x, v.weight, at::zeros({2, 4, 6}, at::kInt)), "'indices'", "x.size(2) (H)");
    EXPECT_ERROR(smoe::forward(v.x, v.weight, at::zeros({2, 5, 7}, at::kInt)), "'indices'", "x.size(3) (W)");
    EXPECT_ERROR(smoe::forward(v.x, v.weight, at::zeros({3, 2, 5, 6}, at::kInt)), "'indices'", "x.size(0) (B)");
    EXPECT_ERROR(smoe::forward(v.x, v.weight, v.indices, at::randn({1, 5, 6})), "'values'", "shape of 'indices'");
    EXPECT_ERROR(smoe::forward(v.x, at::randn({4, 3, 3, 1}), v.indices), "'weight'", "odd size K");
}

TEST(ForwardBadInput, EvenKernelSize) {
    ValidForward v;
    EXPECT_ERROR(smoe::forward(v.x, at::randn({4, 3, 2, 2}), v.indices), "'weight'", "odd size K", "2x2");
}

TEST(ForwardBadInput, OutputChannelsPerExpert) {
    ValidForward v;
    EXPECT_ERROR(smoe::forward(v.x, v.weight, v.indices, std::nullopt, 0), "F (output channels per expert)");
    EXPECT_ERROR(smoe::forward(v.x, v.weight, v.indices, std::nullopt, 3), "not a multiple of F = 3");
}

TEST(ForwardBadInput, MoreSelectedThanExperts) {
    ValidForward v;
    EXPECT_ERROR(smoe::forward(v.x, v.weight, at::zeros({5, 5, 6}, at::kInt)), "1 <= E <= NE", "E = 5", "NE = 4");
}

TEST(ForwardBadInput, IndicesOutsideTheBank) {
    ValidForward v;
    at::Tensor indices = v.indices.clone();
    indices[1][2][3] = 4;
    EXPECT_ERROR(smoe::forward(v.x, v.weight, indices), "'indices'", "expert 4", "NE = 4");
    indices[1][2][3] = -1;
    EXPECT_ERROR(smoe::forward(v.x, v.weight, indices), "'indices'", "expert -1");
}

TEST(ForwardBadInput, DTypes) {
    ValidForward v;
    EXPECT_ERROR(smoe::forward(v.x.to(at::kInt), v.weight, v.indices), "'x'", "float32, float64, float16 or bfloat16");
    EXPECT_ERROR(smoe::forward(v.x.to(at::kHalf), v.weight, v.indices), "'weight'", "dtype of 'x'");
    EXPECT_ERROR(smoe::forward(v.x, v.weight.to(at::kDouble), v.indices), "'weight'", "dtype of 'x'");
    EXPECT_ERROR(smoe::forward(v.x, v.weight, v.indices.to(at::kLong)), "'indices'", "Int");
    EXPECT_ERROR(smoe::forward(v.x, v.weight, v.indices, v.values.to(at::kDouble)), "'values'", "dtype of 'x'");
}

TEST(ForwardBadInput, Devices) {
    ValidForward v;
    EXPECT_ERROR(smoe::forward(v.x, v.weight.to(at::kMeta), v.indices), "'weight'", "device of 'x'");
}

TEST(ForwardBadInput, EmptyTensors) {
    ValidForward v;
    // An empty batch is valid (tests/test_hardening.cpp); any other empty dimension is not.
    EXPECT_ERROR(smoe::forward(at::randn({2, 0, 5, 6}), at::randn({4, 0, 3, 3}), v.indices), "'x'", "is empty",
                 "but the batch must be at least 1");
    EXPECT_ERROR(smoe::forward(v.x, v.weight, at::zeros({0, 5, 6}, at::kInt)), "'indices'", "is empty");
    EXPECT_ERROR(smoe::forward(at::Tensor(), v.weight, v.indices), "'x'", "undefined");
}

TEST(RouteTopKBadInput, Arguments) {
    const at::Tensor routing = at::randn({4, 5, 6});
    EXPECT_EQ(error_of([&] { smoe::route_topk(routing, 4); }), "");
    EXPECT_ERROR(smoe::route_topk(routing, 5), "smoe::route_topk", "1 <= E <= NE", "E = 5", "NE = 4");
    EXPECT_ERROR(smoe::route_topk(routing, 0), "1 <= E <= NE", "E = 0");
    EXPECT_ERROR(smoe::route_topk(routing[0], 1), "'routing'", "[NE, H, W] or [B, NE, H, W]", "2-d");
    EXPECT_ERROR(smoe::route_topk(routing.to(at::kInt), 1), "'routing'", "float32, float64, float16 or bfloat16");
    EXPECT_ERROR(smoe::route_topk(at::randn({4, 0, 6}), 1), "'routing'", "is empty");
    EXPECT_ERROR(smoe::route_topk(at::randn({0, 5, 6}), 1), "'routing'", "is empty");
}

// A kernel asked for more output channels than its routing has slots reads past the end of
// 'indices' and fails inside Halide; the error comes back as an exception carrying Halide's own
// message (the process does not abort).
TEST(HalideErrors, BecomeExceptionsWithHalidesMessage) {
    ValidForward v;
    const at::Tensor too_many_slots = at::empty({2, 3, 5, 6});
    runtime::TensorBuffer x(v.x), weight(v.weight), indices(v.indices), y(too_many_slots);
    auto kernel = runtime::find_kernel<runtime::ForwardArgs>(at::kFloat, at::kCPU, runtime::RoutingVariant{true, false});
    ASSERT_NE(kernel, nullptr);
    runtime::ForwardArgs args{x.get(), weight.get(), indices.get(), nullptr, 1, y.get()};
    EXPECT_ERROR(runtime::run_kernel("smoe::forward", kernel, args, v.x.device()), "smoe::forward",
                 "Halide kernel failed", "indices");
}

}  // namespace
}  // namespace smoe
