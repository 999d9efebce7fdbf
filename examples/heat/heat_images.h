// Pictures and summary figures of a trained heat model: the true region map, the learned routing
// map and the learned stencils next to the true ones. Learned experts come in arbitrary order, so
// each is matched to the region type whose true stencil it is closest to.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace smoe::heat {

// For each expert of weight [kTypes, 1, 3, 3], the type whose true stencil is nearest (L2).
std::vector<int64_t> match_experts_to_types(const at::Tensor &weight);

// Share of grid points whose routed expert (argmax of routing [kTypes, H, W]) is matched to the
// point's true type.
double routing_agreement(const at::Tensor &regions, const at::Tensor &routing, const at::Tensor &weight);

// Writes regions_true.png, regions_learned.png and stencils.png into directory `out` (created if
// missing) and returns their paths. Colours follow the type; learned experts take their matched
// type's colour.
std::vector<std::string> write_images(const std::string &out, const at::Tensor &regions, const at::Tensor &routing,
                                      const at::Tensor &weight);

}  // namespace smoe::heat
