// Configure-time probe (SMOE_HOST_TARGETS, cmake/SmoeKernels.cmake): prints a line "1" or "0" per
// Halide target given, whether this machine's CPU runs it, by the test the runtime dispatches with.
#include <cstdio>

#include "cpu_features.h"

int main(int argc, char **argv) {
    for (int i = 1; i < argc; ++i) std::printf("%d\n", smoe::runtime::cpu_runs_target(argv[i]) ? 1 : 0);
    return 0;
}
