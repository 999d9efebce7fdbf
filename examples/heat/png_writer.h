// A small PNG writer (8-bit RGB, uncompressed deflate blocks) for the training example's images:
// no image library needed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace smoe::heat {

// rgb holds height·width·3 bytes, row-major. Throws std::runtime_error if the file cannot be written.
void write_png(const std::string &path, int width, int height, const std::vector<uint8_t> &rgb);

}  // namespace smoe::heat
