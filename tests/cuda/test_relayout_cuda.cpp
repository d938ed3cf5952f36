// Page re-layout (spec section 6): a P=256 cache copied into 64-token pages. Checks are exact byte
// comparisons: the whole destination pool against a host model of the spec's page mapping (copied pages
// hold the source bytes, every other byte keeps its previous value), plus a per-slot check that every
// copied slot's record reads back identically through both layouts' slot addressing.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "common/device_buffers.h"
#include "common/test_support.h"
#include "smla/cache.h"
#include "smla/relayout.h"

namespace smla {
namespace {

using test::DeviceBuffer;

constexpr int64_t kSourceP = 256;
constexpr int64_t kDestP = 64;
constexpr int64_t kSubPageDataBytes = kDestP * kRowBytes;      // 36864
constexpr int64_t kSourceFooterOffset = kSourceP * kRowBytes;  // 147456
constexpr int64_t kSubPageFooterBytes = kDestP * kScaleBytes;  // 512

void fill_random(test::Rng& rng, uint8_t* bytes, size_t count) {
  for (size_t i = 0; i < count; ++i) bytes[i] = static_cast<uint8_t>(rng.engine()());
}

// Host model of spec section 6 for one destination page: data and footer of source sub-page i.
void copy_sub_page(const CacheLayout& source, const uint8_t* source_bytes, const CacheLayout& destination,
                   uint8_t* dest_bytes, int64_t dest_page) {
  const int64_t source_page = dest_page / 4, sub_page = dest_page % 4;
  const uint8_t* source_page_base = source_bytes + source_page * source.page_stride_bytes;
  uint8_t* dest_page_base = dest_bytes + dest_page * destination.page_stride_bytes;
  std::memcpy(dest_page_base, source_page_base + sub_page * kSubPageDataBytes, kSubPageDataBytes);
  std::memcpy(dest_page_base + kSubPageDataBytes,
              source_page_base + kSourceFooterOffset + sub_page * kSubPageFooterBytes, kSubPageFooterBytes);
}

// The semantic check: every slot of the copied destination pages has the same 576-byte row and 8-byte
// footer entry through the P=64 addressing as through the P=256 addressing.
int64_t count_slot_mismatches(const CacheLayout& source, const uint8_t* source_bytes,
                              const CacheLayout& destination, const uint8_t* dest_bytes,
                              const std::set<int64_t>& copied_dest_pages) {
  int64_t mismatches = 0;
  for (const int64_t dest_page : copied_dest_pages) {
    for (int64_t r = 0; r < kDestP; ++r) {
      const int64_t slot = dest_page * kDestP + r;
      const uint8_t* source_row =
          source_bytes + slot_row_offset(source.page_block_size, source.page_stride_bytes, slot);
      const uint8_t* dest_row =
          dest_bytes + slot_row_offset(destination.page_block_size, destination.page_stride_bytes, slot);
      const uint8_t* source_footer =
          source_bytes + slot_scale_offset(source.page_block_size, source.page_stride_bytes, slot);
      const uint8_t* dest_footer =
          dest_bytes + slot_scale_offset(destination.page_block_size, destination.page_stride_bytes, slot);
      if (std::memcmp(source_row, dest_row, kRowBytes) != 0 ||
          std::memcmp(source_footer, dest_footer, kScaleBytes) != 0) {
        ++mismatches;
      }
    }
  }
  return mismatches;
}

int64_t count_byte_mismatches(const std::vector<uint8_t>& actual, const uint8_t* expected, int64_t* first) {
  int64_t mismatches = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    if (actual[i] != expected[i] && mismatches++ == 0) *first = static_cast<int64_t>(i);
  }
  return mismatches;
}

// Source and destination pools on host and device, both initialised with random bytes.
struct RelayoutFixture {
  test::HostCache source, destination;
  DeviceBuffer device_source, device_destination;
  CacheLayout device_source_layout{}, device_destination_layout{};
  size_t source_bytes = 0, destination_bytes = 0;
};

void make_fixture(test::Rng& rng, int64_t source_pages, int64_t source_pad, int64_t dest_stride,
                  RelayoutFixture* fixture) {
  fixture->source =
      test::make_host_cache(kSourceP, source_pages, writer_page_stride_bytes(kSourceP) + source_pad, 0);
  fixture->destination = test::make_host_cache(kDestP, 4 * source_pages, dest_stride, 0);
  fixture->source_bytes = static_cast<size_t>(fixture->source.pool_bytes());
  fixture->destination_bytes = static_cast<size_t>(fixture->destination.pool_bytes());
  fill_random(rng, static_cast<uint8_t*>(fixture->source.layout.data), fixture->source_bytes);
  fill_random(rng, static_cast<uint8_t*>(fixture->destination.layout.data), fixture->destination_bytes);
  ASSERT_EQ(test::upload_pool(fixture->source, &fixture->device_source, "source pool"), "");
  ASSERT_EQ(test::upload_pool(fixture->destination, &fixture->device_destination, "destination pool"), "");
  fixture->device_source_layout = fixture->source.layout;
  fixture->device_source_layout.data = fixture->device_source.as<void>();
  fixture->device_destination_layout = fixture->destination.layout;
  fixture->device_destination_layout.data = fixture->device_destination.as<void>();
  ASSERT_CUDA_OK(cudaDeviceSynchronize());
}

std::vector<uint8_t> download(const DeviceBuffer& buffer, size_t bytes) {
  std::vector<uint8_t> host(bytes);
  EXPECT_EQ(cudaMemcpy(host.data(), buffer.as<void>(), bytes, cudaMemcpyDeviceToHost), cudaSuccess);
  return host;
}

// Checks the device destination against the host model (fixture->destination after the expected
// copies) and the per-slot view; prints one line.
void expect_destination_matches(RelayoutFixture& fixture, const std::set<int64_t>& copied_pages,
                                const char* label) {
  const std::vector<uint8_t> actual = download(fixture.device_destination, fixture.destination_bytes);
  int64_t first = -1;
  const int64_t byte_mismatches =
      count_byte_mismatches(actual, static_cast<const uint8_t*>(fixture.destination.layout.data), &first);
  CacheLayout actual_layout = fixture.destination.layout;
  actual_layout.data = const_cast<uint8_t*>(actual.data());
  const int64_t slot_mismatches =
      count_slot_mismatches(fixture.source.layout, static_cast<const uint8_t*>(fixture.source.layout.data),
                            actual_layout, actual.data(), copied_pages);
  std::printf(
      "relayout %-28s src pages=%-3lld src stride=%-6lld dst stride=%-6lld copied %3zu/%-3lld dst pages: "
      "%lld mismatched bytes, %lld mismatched slots\n",
      label, static_cast<long long>(fixture.source.layout.num_pages),
      static_cast<long long>(fixture.source.layout.page_stride_bytes),
      static_cast<long long>(fixture.destination.layout.page_stride_bytes), copied_pages.size(),
      static_cast<long long>(fixture.destination.layout.num_pages), static_cast<long long>(byte_mismatches),
      static_cast<long long>(slot_mismatches));
  EXPECT_EQ(byte_mismatches, 0) << label << ": first mismatch at destination byte " << first << " (page "
                                << first / fixture.destination.layout.page_stride_bytes << ", offset "
                                << first % fixture.destination.layout.page_stride_bytes << ")";
  EXPECT_EQ(slot_mismatches, 0) << label;
}

TEST(RelayoutCuda, AllPagesCopiesEveryPage) {
  SMLA_SKIP_WITHOUT_CUDA();
  struct Geometry {
    int64_t source_pages, source_pad, dest_stride;
  };
  const Geometry geometries[] = {{1, 0, 37440}, {5, 0, 37440}, {3, 48, 37376}, {7, 16, 37440 + 64}};
  uint64_t stream_id = 0;
  for (const Geometry& geometry : geometries) {
    test::Rng rng = test::Rng::ForTest(stream_id++);
    RelayoutFixture fixture;
    ASSERT_NO_FATAL_FAILURE(
        make_fixture(rng, geometry.source_pages, geometry.source_pad, geometry.dest_stride, &fixture));
    const Status status = relayout_pages(fixture.device_source_layout, fixture.device_destination_layout,
                                         nullptr, 0, nullptr, 0, nullptr);
    ASSERT_TRUE(status.ok()) << status.message();
    ASSERT_CUDA_OK(cudaDeviceSynchronize());
    std::set<int64_t> all_pages;
    for (int64_t page = 0; page < fixture.destination.layout.num_pages; ++page) {
      all_pages.insert(page);
      copy_sub_page(fixture.source.layout, static_cast<const uint8_t*>(fixture.source.layout.data),
                    fixture.destination.layout, static_cast<uint8_t*>(fixture.destination.layout.data), page);
    }
    expect_destination_matches(fixture, all_pages, "all pages");
  }
}

// Index sets for the touched-pages mode. In-range entries inside [0, width) come only from
// `touched_pages`; the row-stride padding holds in-range slots of other pages, which must not be read.
struct HostIndexSet {
  std::vector<int32_t> indices;
  int64_t num_rows = 0, width = 0, row_stride = 0;
};

HostIndexSet make_index_set(test::Rng& rng, int64_t num_rows, int64_t width, int64_t row_stride,
                            const std::vector<int64_t>& touched_pages,
                            const std::vector<int64_t>& other_pages, int64_t num_slots) {
  HostIndexSet set;
  set.num_rows = num_rows;
  set.width = width;
  set.row_stride = row_stride;
  set.indices.resize(static_cast<size_t>(std::max<int64_t>(num_rows * row_stride, 1)));
  auto slot_in = [&](const std::vector<int64_t>& pages) {
    const int64_t page =
        pages[static_cast<size_t>(rng.uniform_int(0, static_cast<int64_t>(pages.size()) - 1))];
    return static_cast<int32_t>(page * kDestP + rng.uniform_int(0, kDestP - 1));
  };
  for (int64_t row = 0; row < num_rows; ++row) {
    for (int64_t column = 0; column < row_stride; ++column) {
      int32_t& index = set.indices[static_cast<size_t>(row * row_stride + column)];
      if (column >= width) {
        index = other_pages.empty() ? -1 : slot_in(other_pages);  // padding: never read
        continue;
      }
      switch (rng.uniform_int(0, 5)) {
        case 0:
          index = -1;
          break;
        case 1:
          index = static_cast<int32_t>(num_slots + rng.uniform_int(0, 1000));  // out of range: ignored
          break;
        case 2:
          index = std::numeric_limits<int32_t>::min();
          break;
        default:
          index = touched_pages.empty() ? -1 : slot_in(touched_pages);
          break;
      }
    }
  }
  return set;
}

// Destination pages an index set marks: valid entries inside the width only.
void add_marked_pages(const HostIndexSet& set, int64_t num_slots, std::set<int64_t>* pages) {
  for (int64_t row = 0; row < set.num_rows; ++row) {
    for (int64_t column = 0; column < set.width; ++column) {
      const int32_t slot = set.indices[static_cast<size_t>(row * set.row_stride + column)];
      if (slot >= 0 && slot < num_slots) pages->insert(slot / kDestP);
    }
  }
}

struct DeviceIndexSets {
  std::vector<DeviceBuffer> buffers;
  std::vector<RelayoutIndexSet> sets;
};

void upload_index_sets(const std::vector<HostIndexSet>& host_sets, DeviceIndexSets* device) {
  if (device->buffers.size() != host_sets.size())
    device->buffers = std::vector<DeviceBuffer>(host_sets.size());
  device->sets.clear();
  for (size_t i = 0; i < host_sets.size(); ++i) {
    // Same size as last time (graph replays): the buffer, and so the captured pointer, is reused.
    ASSERT_EQ(test::upload_vector(host_sets[i].indices, &device->buffers[i], "index set"), "");
    RelayoutIndexSet set;
    set.indices =
        host_sets[i].width > 0 && host_sets[i].num_rows > 0 ? device->buffers[i].as<int32_t>() : nullptr;
    set.num_rows = host_sets[i].num_rows;
    set.width = host_sets[i].width;
    set.row_stride = host_sets[i].row_stride;
    device->sets.push_back(set);
  }
}

// Splits the destination pages into a random "touched" half and the rest.
void split_pages(test::Rng& rng, int64_t num_dest_pages, std::vector<int64_t>* touched,
                 std::vector<int64_t>* others) {
  touched->clear();
  others->clear();
  for (int64_t page = 0; page < num_dest_pages; ++page) {
    (rng.uniform01() < 0.4 ? touched : others)->push_back(page);
  }
  if (touched->empty()) {
    touched->push_back(others->back());
    others->pop_back();
  }
}

std::vector<HostIndexSet> make_index_sets(test::Rng& rng, const std::vector<int64_t>& touched,
                                          const std::vector<int64_t>& others, int64_t num_slots) {
  std::vector<HostIndexSet> sets;
  sets.push_back(make_index_set(rng, 3, 40, 48, touched, others, num_slots));  // padded rows
  sets.push_back(make_index_set(rng, 2, 7, 7, touched, others, num_slots));
  sets.push_back(make_index_set(rng, 4, 0, 0, touched, others, num_slots));  // empty set
  sets.push_back(make_index_set(rng, 1, 129, 200, touched, others, num_slots));
  return sets;
}

TEST(RelayoutCuda, TouchedPagesOnlyCopiesMarkedPages) {
  SMLA_SKIP_WITHOUT_CUDA();
  struct Geometry {
    int64_t source_pages, source_pad, dest_stride;
  };
  const Geometry geometries[] = {{6, 0, 37440}, {9, 32, 37376}, {2, 0, 37440 + 16}};
  uint64_t stream_id = 10;
  for (const Geometry& geometry : geometries) {
    test::Rng rng = test::Rng::ForTest(stream_id++);
    RelayoutFixture fixture;
    ASSERT_NO_FATAL_FAILURE(
        make_fixture(rng, geometry.source_pages, geometry.source_pad, geometry.dest_stride, &fixture));
    const int64_t num_slots = cache_num_slots(fixture.source.layout);
    std::vector<int64_t> touched, others;
    split_pages(rng, fixture.destination.layout.num_pages, &touched, &others);
    const std::vector<HostIndexSet> host_sets = make_index_sets(rng, touched, others, num_slots);
    DeviceIndexSets device_sets;
    ASSERT_NO_FATAL_FAILURE(upload_index_sets(host_sets, &device_sets));

    const int64_t workspace_bytes = relayout_workspace_bytes(fixture.source.layout);
    ASSERT_GE(workspace_bytes, fixture.destination.layout.num_pages);
    DeviceBuffer workspace;
    ASSERT_EQ(workspace.allocate(static_cast<size_t>(workspace_bytes)), "");
    ASSERT_CUDA_OK(
        cudaMemset(workspace.as<void>(), 0xAB, static_cast<size_t>(workspace_bytes)));  // stale marks
    const Status status = relayout_pages(fixture.device_source_layout, fixture.device_destination_layout,
                                         device_sets.sets.data(), static_cast<int>(device_sets.sets.size()),
                                         workspace.as<void>(), workspace_bytes, nullptr);
    ASSERT_TRUE(status.ok()) << status.message();
    ASSERT_CUDA_OK(cudaDeviceSynchronize());

    std::set<int64_t> marked;
    for (const HostIndexSet& set : host_sets) add_marked_pages(set, num_slots, &marked);
    for (const int64_t page : marked) {
      copy_sub_page(fixture.source.layout, static_cast<const uint8_t*>(fixture.source.layout.data),
                    fixture.destination.layout, static_cast<uint8_t*>(fixture.destination.layout.data), page);
    }
    expect_destination_matches(fixture, marked, "touched pages");
  }
}

// A captured graph of the touched-pages sequence replays with new indices and new source bytes.
TEST(RelayoutCuda, GraphReplayWithNewIndices) {
  SMLA_SKIP_WITHOUT_CUDA();
  test::Rng rng = test::Rng::ForTest(20);
  RelayoutFixture fixture;
  ASSERT_NO_FATAL_FAILURE(make_fixture(rng, 8, 0, 37440, &fixture));
  const int64_t num_slots = cache_num_slots(fixture.source.layout);
  const int64_t workspace_bytes = relayout_workspace_bytes(fixture.source.layout);
  DeviceBuffer workspace;
  ASSERT_EQ(workspace.allocate(static_cast<size_t>(workspace_bytes)), "");

  std::vector<int64_t> touched, others;
  split_pages(rng, fixture.destination.layout.num_pages, &touched, &others);
  std::vector<HostIndexSet> host_sets = make_index_sets(rng, touched, others, num_slots);
  DeviceIndexSets device_sets;
  ASSERT_NO_FATAL_FAILURE(upload_index_sets(host_sets, &device_sets));

  cudaStream_t stream = nullptr;
  ASSERT_CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t graph_exec = nullptr;
  ASSERT_CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const Status status = relayout_pages(fixture.device_source_layout, fixture.device_destination_layout,
                                       device_sets.sets.data(), static_cast<int>(device_sets.sets.size()),
                                       workspace.as<void>(), workspace_bytes, stream);
  ASSERT_CUDA_OK(cudaStreamEndCapture(stream, &graph));
  ASSERT_TRUE(status.ok()) << status.message();
  ASSERT_CUDA_OK(cudaGraphInstantiate(&graph_exec, graph, 0));

  for (int replay = 0; replay < 3; ++replay) {
    if (replay > 0) {
      // New indices (same shapes, same device buffers) and new source bytes.
      split_pages(rng, fixture.destination.layout.num_pages, &touched, &others);
      host_sets = make_index_sets(rng, touched, others, num_slots);
      ASSERT_NO_FATAL_FAILURE(upload_index_sets(host_sets, &device_sets));
      fill_random(rng, static_cast<uint8_t*>(fixture.source.layout.data), fixture.source_bytes);
      ASSERT_CUDA_OK(cudaMemcpy(fixture.device_source.as<void>(), fixture.source.layout.data,
                                fixture.source_bytes, cudaMemcpyHostToDevice));
      ASSERT_CUDA_OK(cudaDeviceSynchronize());
    }
    ASSERT_CUDA_OK(cudaGraphLaunch(graph_exec, stream));
    ASSERT_CUDA_OK(cudaStreamSynchronize(stream));
    std::set<int64_t> marked;
    for (const HostIndexSet& set : host_sets) add_marked_pages(set, num_slots, &marked);
    // The destination accumulates: pages copied by earlier replays keep their earlier bytes.
    for (const int64_t page : marked) {
      copy_sub_page(fixture.source.layout, static_cast<const uint8_t*>(fixture.source.layout.data),
                    fixture.destination.layout, static_cast<uint8_t*>(fixture.destination.layout.data), page);
    }
    const std::string label = "graph replay " + std::to_string(replay);
    expect_destination_matches(fixture, marked, label.c_str());
  }
  cudaGraphExecDestroy(graph_exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

// Argument checks that come before any memory-space check run on host buffers, with or without a GPU.
TEST(RelayoutValidation, MessagesNameTheArgument) {
  test::HostCache source = test::make_host_cache(kSourceP, 2, 0, 0);
  test::HostCache destination = test::make_host_cache(kDestP, 8, 0, 0);
  const CacheLayout good_source = source.layout;
  const CacheLayout good_destination = destination.layout;
  std::vector<uint8_t> workspace(64);
  const int64_t workspace_bytes = relayout_workspace_bytes(good_source);
  EXPECT_EQ(workspace_bytes, 8);
  std::vector<int32_t> indices(16, 0);
  RelayoutIndexSet good_set;
  good_set.indices = indices.data();
  good_set.num_rows = 2;
  good_set.width = 8;
  good_set.row_stride = 8;

  auto expect_error = [&](const Status& status, const std::string& name) {
    EXPECT_EQ(status.code(), SMLA_STATUS_INVALID_ARGUMENT) << status.message();
    EXPECT_NE(status.message().find(name), std::string::npos)
        << "message '" << status.message() << "' should name " << name;
    std::printf("relayout validation: %-34s -> %s\n", name.c_str(), status.message().c_str());
  };
  auto run = [&](const CacheLayout& src, const CacheLayout& dst, const RelayoutIndexSet* sets, int num_sets,
                 void* ws, int64_t ws_bytes) {
    return relayout_pages(src, dst, sets, num_sets, ws, ws_bytes, nullptr);
  };

  const CacheLayout destination_layout = relayout_destination_layout(good_source, destination.layout.data);
  EXPECT_EQ(destination_layout.page_block_size, 64);
  EXPECT_EQ(destination_layout.page_stride_bytes, 37440);
  EXPECT_EQ(destination_layout.num_pages, 8);

  CacheLayout bad = good_source;
  bad.page_block_size = 64;
  bad.page_stride_bytes = 37440;
  expect_error(run(bad, good_destination, nullptr, 0, nullptr, 0), "source.page_block_size");
  bad = good_source;
  bad.page_stride_bytes = 149760 + 8;
  expect_error(run(bad, good_destination, nullptr, 0, nullptr, 0), "source.page_stride_bytes");
  bad = good_destination;
  bad.page_block_size = 256;
  bad.page_stride_bytes = 149760;
  bad.num_pages = 2;
  expect_error(run(good_source, bad, nullptr, 0, nullptr, 0), "destination.page_block_size");
  bad = good_destination;
  bad.num_pages = 7;
  expect_error(run(good_source, bad, nullptr, 0, nullptr, 0), "destination.num_pages");
  bad = good_destination;
  bad.page_stride_bytes = 37376 - 16;
  expect_error(run(good_source, bad, nullptr, 0, nullptr, 0), "destination.page_stride_bytes");
  bad = good_destination;
  bad.page_stride_bytes = 37376 + 8;
  expect_error(run(good_source, bad, nullptr, 0, nullptr, 0), "destination.page_stride_bytes");
  bad = good_destination;
  bad.data = nullptr;
  expect_error(run(good_source, bad, nullptr, 0, nullptr, 0), "destination.data");
  bad = good_destination;
  bad.data = source.layout.data;  // overlaps the source pool
  bad.num_pages = 8;
  expect_error(run(good_source, bad, nullptr, 0, nullptr, 0), "destination.data");

  RelayoutIndexSet sets[9] = {good_set, good_set, good_set, good_set, good_set,
                              good_set, good_set, good_set, good_set};
  expect_error(run(good_source, good_destination, sets, 9, workspace.data(), workspace_bytes),
               "num_index_sets");
  expect_error(run(good_source, good_destination, sets, -1, workspace.data(), workspace_bytes),
               "num_index_sets");
  expect_error(run(good_source, good_destination, nullptr, 1, workspace.data(), workspace_bytes),
               "index_sets");
  sets[1].width = -1;
  expect_error(run(good_source, good_destination, sets, 2, workspace.data(), workspace_bytes),
               "index_sets[1].width");
  sets[1] = good_set;
  sets[0].row_stride = 7;
  expect_error(run(good_source, good_destination, sets, 2, workspace.data(), workspace_bytes),
               "index_sets[0].row_stride");
  sets[0] = good_set;
  sets[2].num_rows = -3;
  expect_error(run(good_source, good_destination, sets, 3, workspace.data(), workspace_bytes),
               "index_sets[2].num_rows");
  sets[2] = good_set;
  sets[3].indices = nullptr;
  expect_error(run(good_source, good_destination, sets, 4, workspace.data(), workspace_bytes),
               "index_sets[3].indices");
  sets[3] = good_set;
  expect_error(run(good_source, good_destination, sets, 2, nullptr, workspace_bytes), "workspace");
  expect_error(run(good_source, good_destination, sets, 2, workspace.data(), workspace_bytes - 1),
               "workspace_bytes");

  // An empty set may have a null pointer; everything else valid, so the memory-space check decides: host
  // buffers are rejected (naming source.data) with a GPU, or the call reports that no device exists.
  sets[3].indices = nullptr;
  sets[3].num_rows = 0;
  const Status host_memory = run(good_source, good_destination, sets, 4, workspace.data(), workspace_bytes);
  EXPECT_FALSE(host_memory.ok());
  std::string reason;
  if (test::cuda_device_present(&reason)) {
    expect_error(host_memory, "source.data");
  } else {
    std::printf("relayout validation: host buffers without a device -> %s\n", host_memory.message().c_str());
  }
}

// With device pools, host index or workspace pointers are rejected by name.
TEST(RelayoutValidation, DeviceMemoryRequired) {
  SMLA_SKIP_WITHOUT_CUDA();
  test::Rng rng = test::Rng::ForTest(30);
  RelayoutFixture fixture;
  ASSERT_NO_FATAL_FAILURE(make_fixture(rng, 2, 0, 37440, &fixture));
  const int64_t workspace_bytes = relayout_workspace_bytes(fixture.source.layout);
  DeviceBuffer device_workspace, device_indices;
  ASSERT_EQ(device_workspace.allocate(static_cast<size_t>(workspace_bytes)), "");
  ASSERT_EQ(device_indices.allocate(16 * sizeof(int32_t)), "");
  std::vector<int32_t> host_indices(16, 0);
  std::vector<uint8_t> host_workspace(static_cast<size_t>(workspace_bytes));
  RelayoutIndexSet set;
  set.num_rows = 2;
  set.width = 8;
  set.row_stride = 8;

  set.indices = host_indices.data();
  Status status = relayout_pages(fixture.device_source_layout, fixture.device_destination_layout, &set, 1,
                                 device_workspace.as<void>(), workspace_bytes, nullptr);
  EXPECT_EQ(status.code(), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(status.message().find("index_sets[0].indices"), std::string::npos) << status.message();
  std::printf("relayout validation: host indices -> %s\n", status.message().c_str());

  set.indices = device_indices.as<int32_t>();
  status = relayout_pages(fixture.device_source_layout, fixture.device_destination_layout, &set, 1,
                          host_workspace.data(), workspace_bytes, nullptr);
  EXPECT_EQ(status.code(), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(status.message().find("workspace"), std::string::npos) << status.message();
  std::printf("relayout validation: host workspace -> %s\n", status.message().c_str());

  CacheLayout host_destination = fixture.destination.layout;
  status = relayout_pages(fixture.device_source_layout, host_destination, nullptr, 0, nullptr, 0, nullptr);
  EXPECT_EQ(status.code(), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(status.message().find("destination.data"), std::string::npos) << status.message();
}

}  // namespace
}  // namespace smla
