// The resident thread-block clusters of a 132-SM Hopper GPU, for tests that plan on a simulated one.
#pragma once

#include <algorithm>
#include <iterator>

#include "common/backend_entry.h"

namespace smla::test {

// cudaOccupancyMaxActiveClusters of the sm_90a decode kernel for clusters of 2..8 CTAs (indexed by CTAs)
// on the H200 and H100 (132 SMs), as DecodeCuda.ClusterOccupancyIsKnownOnHopper prints it (H200,
// 2026-12-04): fewer than 132 / n, since a cluster stays inside a GPC. The sm_90a kernel's split schedule
// counts waves against them.
inline void set_hopper_resident_clusters(detail::CudaDeviceInfo* info) {
  constexpr int kResidentClusters[9] = {0, 0, 66, 39, 30, 22, 17, 15, 15};
  std::copy(std::begin(kResidentClusters), std::end(kResidentClusters),
            std::begin(info->max_active_clusters));
}

}  // namespace smla::test
