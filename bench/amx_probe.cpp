// What Halide's AMX path gives for the bfloat16 forward, measured before it becomes a formulation:
// the weatherbench layer (B=8 C=128 32x64 NE=256 E=128, 3x3, shared routing) as a convolution over
// all NE experts on AMX tiles, then the gather of each point's E experts, JIT-compiled for
// avx512_sapphirerapids. It is a probe, not a kernel of the library.
//
// How it maps onto the tiles: per strip of 16 pixels of a row, the strip's receptive fields are
// copied into a [16 x 9C] bfloat16 buffer (im2col of 16 pixels, in L1); tdpbf16ps multiplies 16
// pixels x 32 of its columns by 32 rows x 16 experts of the bank (re-laid out in the pairs layout
// AMX reads), accumulating in a tile over the 9C/32 chunks; the [16 x NE] float32 result of the
// strip then gives each pixel its E selected experts, rounded to bfloat16. The input is passed
// channels-last and padded by one point, the bank already in the pairs layout: those re-layouts
// are not timed.
//
// Halide's matcher (ExtractTileOperations) takes only a 2-D tile whose left operand's index is
// ramp(x*stride, stride, 16) + ramp(k, 1, 32) and whose right operand's is (ramp(0, 1, 32) / 2 +
// chunk*16) * stride + ramp % 2 + ...: reading the input directly (taps as reduction variables, or
// one flattened tap-and-channel index) leaves terms the matcher rejects ("Store to AMX tile
// allocation of a non-tile value"); the im2col strip is what makes the index of that form.
//
// Usage: build/bin/smoe_amx_probe [rounds]. Prints the median time of the forward and checks
// sampled outputs against float64 sums.
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "Halide.h"

using namespace Halide;

namespace {

constexpr int kBatch = 8, kChannels = 128, kHeight = 32, kWidth = 64, kExperts = 256, kSelected = 128;
constexpr int kTaps = 9, kReduction = kTaps * kChannels;
constexpr int kTile = 16;    // AMX tile: 16 rows of 64 bytes (16 pixels, 16 experts)
constexpr int kPairs = 32;   // bfloat16 values of the reduction per tile row

// Linux hands out the AMX tile state only on request (arch_prctl ARCH_REQ_XCOMP_PERM, XTILEDATA).
bool request_amx_state() {
    constexpr long kRequestPermission = 0x1023, kTileData = 18;
    return syscall(SYS_arch_prctl, kRequestPermission, kTileData) == 0;
}

struct Probe {
    ImageParam input{BFloat(16), 4, "input"};    // input(c, x, y, b), padded by 1 in x and y
    ImageParam bank{BFloat(16), 3, "bank"};      // bank(k % 2, n, k / 2), k = tap * C + c
    ImageParam experts{Int(32), 3, "experts"};   // experts(slot, x, y): shared routing
    Func output{"output"};

    Probe() {
        Var n("n"), x("x"), y("y"), b("b"), k("k"), s("s");
        Func strip("strip");
        strip(k, x, y, b) = input(k % kChannels, x + (k / kChannels) % 3, y + k / (3 * kChannels), b);
        RDom r(0, kReduction, "r");
        Func dense("dense");
        dense(n, x, y, b) = cast<float>(0);
        dense(n, x, y, b) += cast<float>(strip(r.x, x, y, b)) * cast<float>(bank(r.x % 2, n, r.x / 2));
        Func strip_dense("strip_dense");
        strip_dense(n, x, y, b) = dense(n, x, y, b);
        output(s, x, y, b) = cast<bfloat16_t>(strip_dense(clamp(experts(s, x, y), 0, kExperts - 1), x, y, b));

        bank.dim(0).set_stride(1).set_extent(2);
        bank.dim(1).set_stride(2);
        Var xo("xo"), xi("xi"), no("no"), ni("ni"), px("px"), pxi("pxi"), kc("kc"), ki("ki");
        Var tn("tn"), tx("tx"), zn("zn"), zx("zx");
        RVar chunk("chunk"), pair("pair");
        output.split(x, xo, xi, kTile).reorder(s, xi, xo, y, b).fuse(y, b, y).parallel(y).vectorize(s, 16);
        strip.compute_at(output, xo).split(k, kc, ki, kPairs).reorder(ki, x, kc).vectorize(ki);
        strip_dense.compute_at(output, xo).tile(n, x, no, px, ni, pxi, kTile, kTile).reorder(ni, pxi, no, px)
            .vectorize(ni).vectorize(pxi);
        dense.compute_at(strip_dense, no).store_in(MemoryType::AMXTile)
            .tile(n, x, zn, zx, kTile, kTile).vectorize(zn).vectorize(zx);
        dense.update().tile(n, x, tn, tx, kTile, kTile, TailStrategy::GuardWithIf)
            .split(r.x, chunk, pair, kPairs).reorder({pair, tn, tx, chunk, n, x, y, b})
            .atomic().vectorize(pair).vectorize(tn).vectorize(tx);
    }
};

}  // namespace

int main(int argc, char **argv) try {
    const int rounds = argc > 1 ? std::max(3, std::atoi(argv[1])) : 15;
    Target target = get_host_target();
    if (!target.has_feature(Target::AVX512_SapphireRapids)) {
        std::printf("amx probe: this CPU has no AMX (host target %s); nothing to measure\n", target.to_string().c_str());
        return 0;
    }
    if (!request_amx_state()) {
        std::printf("amx probe: the kernel refused the AMX tile state (arch_prctl); nothing to measure\n");
        return 0;
    }
    Probe probe;
    probe.output.compile_jit(target);

    Buffer<bfloat16_t> input(kChannels, kWidth + 2, kHeight + 2, kBatch), bank(2, kExperts, kReduction / 2);
    Buffer<int32_t> experts(kSelected, kWidth, kHeight);
    std::srand(1);
    auto uniform = [] { return static_cast<float>(std::rand()) / RAND_MAX - 0.5f; };
    input.for_each_value([&](bfloat16_t &v) { v = bfloat16_t(uniform()); });
    bank.for_each_value([&](bfloat16_t &v) { v = bfloat16_t(uniform()); });
    for (int y = 0; y < kHeight; ++y)
        for (int x = 0; x < kWidth; ++x)
            for (int slot = 0; slot < kSelected; ++slot) experts(slot, x, y) = 2 * slot + (x * 7 + y * 3 + slot) % 2;
    probe.input.set(input);
    probe.bank.set(bank);
    probe.experts.set(experts);
    Buffer<bfloat16_t> output(kSelected, kWidth, kHeight, kBatch);
    probe.output.realize(output);

    // Sampled outputs against float64 sums: the tiles sum exact bf16 products in float32, so they
    // differ by float32 summation order and the output's one bfloat16 rounding (2^-9 relative).
    double worst = 0;
    for (int b = 0; b < kBatch; b += 3)
        for (int y = 0; y < kHeight; y += 5)
            for (int x = 0; x < kWidth; x += 7)
                for (int slot = 0; slot < kSelected; slot += 13) {
                    const int n = experts(slot, x, y);
                    double sum = 0;
                    for (int tap = 0; tap < kTaps; ++tap)
                        for (int c = 0; c < kChannels; ++c) {
                            const int k = tap * kChannels + c;
                            sum += static_cast<double>(input(c, x + tap % 3, y + tap / 3, b)) *
                                   static_cast<double>(bank(k % 2, n, k / 2));
                        }
                    const double got = static_cast<float>(output(slot, x, y, b));
                    worst = std::max(worst, std::abs(got - sum) / std::max(1.0, std::abs(sum)));
                }

    std::vector<double> seconds;
    for (int round = 0; round < rounds; ++round) {
        const auto start = std::chrono::steady_clock::now();
        probe.output.realize(output);
        seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    std::sort(seconds.begin(), seconds.end());
    const double median = seconds[seconds.size() / 2];
    const double useful = 2.0 * kBatch * kSelected * kChannels * kTaps * kHeight * kWidth;
    std::printf("amx probe: weatherbench forward (B=%d C=%d %dx%d NE=%d E=%d, bfloat16), dense over NE on AMX tiles "
                "+ gather, %d threads\n  median %.2f ms (range %.2f-%.2f over %d runs), %.0f GFLOP/s of the layer's "
                "work (%.0f counting all NE)\n  sampled outputs vs float64: worst |diff| / max(1, |ref|) = %.2e\n",
                kBatch, kChannels, kHeight, kWidth, kExperts, kSelected, static_cast<int>(std::thread::hardware_concurrency()),
                median * 1e3, seconds.front() * 1e3, seconds.back() * 1e3, rounds, useful / median * 1e-9,
                useful * kExperts / kSelected / median * 1e-9, worst);
    const double bound = 1.0 / 128;  // one bfloat16 rounding (8 significant bits) and float32 order
    if (worst > bound) {
        std::printf("amx probe: outputs differ from the reference beyond %.1e\n", bound);
        return 1;
    }
    return 0;
} catch (const Halide::Error &e) {
    std::fprintf(stderr, "amx probe: %s\n", e.what());
    return 1;
}
