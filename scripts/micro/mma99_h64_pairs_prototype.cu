// Compile-only prototype of a 64-head 99 KB-class tile loop (docs/perf.md, "Considered, not built: 64 heads
// a CTA in warp pairs that share the dequantized rows", forty-second session). NOT a working kernel: what it
// answers is whether the loop's live state fits 255 registers, and how many instructions the loop body has
// next to mma99-h32's (scripts/micro/mma99_h64_pairs_prototype prints ptxas's registers and spills, and the
// PTX instructions of both loop bodies).
//
// Layout: 8 warps, warp w = pair p = w / 2 (dims 128 p .. 128 p + 127: scale groups 2 p, 2 p + 1; pair 3 is
// group 6 and the rope dims) and half h = w % 2. A warp computes S and O for heads 32 h .. 32 h + 31 over its
// pair's 128 dims, with 16-token compute tiles. It dequantizes only tokens 8 h .. 8 h + 7 of its dims into
// MMA fragments, swaps them with its partner through shared memory behind a two-warp named barrier, and so
// holds all 16 tokens' K (= V) fragments: a 64-head CTA dequantizes each token's 512 dims once, where
// mma99-h32 dequantizes them once per 32 heads. Q (64 heads x 512 dims, 64 KB) is read from shared memory
// every tile; partial S goes through a 4-partial exchange that lies over the pair's swap region (each warp
// stores its partials over the half it read from its partner).
//
// What it simplifies against a real kernel: one list, no lengths or splits, slot addresses without page
// geometry, no error counting, no sink or lse, fp32 out. The row table keeps mma99-h32's scheme (warp 7
// writes 16-token stages two tiles ahead; every warp copies its own tokens' bytes from it).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>

#include "cuda/common/fp8_dequant.cuh"
#include "cuda/common/mma_sm80.cuh"
#include "cuda/decode/async_copy.cuh"
#include "cuda/decode/tile_common.cuh"

namespace proto {

using namespace smla::detail::decode;
using namespace smla::detail::mma;
namespace fp8 = smla::detail::fp8;

constexpr int kHeads = 64;
constexpr int kTile = 16;
constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kRowBytes = 576;
constexpr int kQRowBytes = 1024;                 // 512 bf16 dims, swizzled 16-byte chunks
constexpr int kQBytes = kHeads * kQRowBytes;     // 65,536
constexpr int kSwapBytes = 4 * 2 * 32 * 4 * 16;  // 16,384: [pair][half][uint4 i][lane]; exchange over it
constexpr int kStagingWarpBytes = 8 * 192;       // 8 tokens x (128 fp8 bytes, or 64 fp8 + 128 rope)
constexpr int kStagingBytes = kWarps * kStagingWarpBytes;
constexpr int kScaleWordBytes = kWarps * 8 * 4;
constexpr int kPBytes = kHeads * kTile * 2;  // bf16 [head][16 tokens]
constexpr int kTableStageBytes = 16 * 8 * 2 + 16;
constexpr int kTableBytes = 3 * kTableStageBytes;
constexpr int kQOffset = 0;
constexpr int kSwapOffset = kQOffset + kQBytes;
constexpr int kStagingOffset = kSwapOffset + kSwapBytes;
constexpr int kScaleWordOffset = kStagingOffset + kStagingBytes;
constexpr int kPOffset = kScaleWordOffset + kScaleWordBytes;
constexpr int kRescaleOffset = kPOffset + kPBytes;
constexpr int kTableOffset = kRescaleOffset + kHeads * 4;
constexpr int kSharedBytes = kTableOffset + kTableBytes;
static_assert(kSharedBytes <= 101376, "the prototype's map fits the 99 KB class");

struct Params {
  const uint16_t* q;       // [64][512] bf16
  const uint8_t* cache;    // rows of 576 bytes, then footers of 8 bytes
  const int32_t* indices;  // [num_tiles * 16]
  int num_tiles;
  int64_t footer_base;  // byte offset of slot 0's footer
  float scale_log2;
  float* out;  // [64][512] fp32
};

struct TableStage {
  const uint8_t* row[16];
  const uint8_t* footer[16];
  uint32_t valid_mask, present, padding[2];
};

__device__ __forceinline__ uint32_t q_offset(int row, int chunk) {
  return static_cast<uint32_t>(row * kQRowBytes + ((chunk ^ (row & 7)) * 16));
}

// Float offset of (local head 0..31, token 0..15) in a 2 KB partial block: 4-token groups XOR-ed with the
// head's low two bits.
__device__ __forceinline__ int exchange_offset(int head, int token) {
  return head * 16 + (((token / 4) ^ (head & 3)) * 4) + token % 4;
}

__device__ __forceinline__ void write_stage(TableStage& stage, const Params& params, int tile, int lane) {
  if (lane < 16) {
    const bool present = tile < params.num_tiles;
    const int32_t slot = present ? params.indices[tile * kTile + lane] : -1;
    const bool valid = slot >= 0;
    stage.row[lane] = params.cache + (valid ? int64_t(slot) * kRowBytes : 0);
    stage.footer[lane] = params.cache + (valid ? params.footer_base + int64_t(slot) * 8 : 0);
  }
  const uint32_t valid_mask = __ballot_sync(
      0xffffffffu, lane < 16 && tile < params.num_tiles && params.indices[tile * kTile + (lane & 15)] >= 0);
  if (lane == 0)
    *reinterpret_cast<uint2*>(&stage.valid_mask) = make_uint2(valid_mask, tile < params.num_tiles);
}

// The warp's own 8 tokens (8 h + t) of its pair's two groups: fp8 bytes, footer word; pair 3's second group
// is the rope's 128 bytes.
__device__ __forceinline__ uint32_t issue_copies(const TableStage& stage, uint32_t staging,
                                                 uint32_t scale_words, int pair, int half, int lane,
                                                 bool& present) {
  const uint2 header = *reinterpret_cast<const uint2*>(&stage.valid_mask);
  present = header.y != 0;
  if (present) {
    const int chunks = pair < 3 ? 8 : 12;  // 16-byte chunks a token
#pragma unroll
    for (int step = 0; step < 3; ++step) {
      const int c = step * 32 + lane;
      if (step < 2 || pair == 3) {
        const int t = c / chunks;
        const int chunk = c % chunks;
        const int token = 8 * half + t;
        const int source =
            pair < 3 ? 128 * pair + 16 * chunk : (chunk < 4 ? 384 + 16 * chunk : 448 + 16 * (chunk - 4));
        cp_async_16(staging + t * 192 + chunk * 16, stage.row[token] + source, (header.x >> token) & 1u);
      }
    }
    if (lane < 8) {
      const int token = 8 * half + lane;
      cp_async_4(scale_words + lane * 4, stage.footer[token] + (pair >= 2 ? 4 : 0), (header.x >> token) & 1u);
    }
    cp_async_commit();
  }
  return header.x;
}

__global__ void __launch_bounds__(kThreads, 1) h64_pairs_loop(const Params params) {
  extern __shared__ __align__(128) uint8_t shared[];
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int pair = warp / 2;
  const int half = warp % 2;
  const int group_row = lane / 4;
  const int quad_lane = lane % 4;
  const uint32_t q_base = shared_address(shared + kQOffset);
  uint4* swap_mine = reinterpret_cast<uint4*>(shared + kSwapOffset + pair * 4096 + half * 2048);
  const uint4* swap_partner =
      reinterpret_cast<const uint4*>(shared + kSwapOffset + pair * 4096 + (1 - half) * 2048);
  // Exchange block of partial `pair`, heads 32 h ..: over the half this warp read from its partner.
  float* exchange_mine = reinterpret_cast<float*>(shared + kSwapOffset + pair * 4096 + (1 - half) * 2048);
  const float* exchange = reinterpret_cast<const float*>(shared + kSwapOffset);
  uint8_t* staging = shared + kStagingOffset + warp * kStagingWarpBytes;
  const uint32_t staging_base = shared_address(staging);
  const uint32_t* scale_words = reinterpret_cast<const uint32_t*>(shared + kScaleWordOffset) + warp * 8;
  const uint32_t scale_word_base = shared_address(scale_words);
  const uint32_t p_base = shared_address(shared + kPOffset);
  float* row_rescale = reinterpret_cast<float*>(shared + kRescaleOffset);
  TableStage* table = reinterpret_cast<TableStage*>(shared + kTableOffset);

  // Q into shared memory (every thread, 64 KB).
  for (int c = threadIdx.x; c < kHeads * 64; c += kThreads)
    cp_async_16(q_base + q_offset(c / 64, c % 64), params.q + (c / 64) * 512 + (c % 64) * 8, true);
  cp_async_commit();
  if (warp == kWarps - 1) {
    write_stage(table[0], params, 0, lane);
    write_stage(table[1], params, 1, lane);
  }
  __syncthreads();
  bool present = false;
  int stage_index = 0;
  uint32_t valid_next = issue_copies(table[0], staging_base, scale_word_base, pair, half, lane, present);
  stage_index = 1;
  int ahead_tile = 2;

  const int softmax_head = threadIdx.x / 4;  // 0..63
  const int softmax_token = threadIdx.x % 4 * 4;
  float running_max = kInitialRunningMax;
  float row_sum = 0.f;
  float out_acc[2][16][4] = {};
  const int a_row_in_group = (lane & 7) + ((lane >> 3) & 1) * 8;
  const int a_chunk = (lane >> 4) ^ half;  // k columns 0..7 are this warp's own tokens

  while (present) {
    cp_async_wait_all();
    __syncwarp();
    // ---- Dequantize the warp's 8 tokens x 128 dims into B fragments: token 8 h + g, dims 16 c.. of each
    // group.
    uint32_t own[2][8];
#pragma unroll
    for (int gi = 0; gi < 2; ++gi) {
      uint4 low, high;
      if (pair < 3 || gi == 0) {
        const uint4 raw =
            *reinterpret_cast<const uint4*>(staging + group_row * 192 + gi * 64 + quad_lane * 16);
        const int group = 2 * pair + gi;
        const uint32_t scale_byte = (scale_words[group_row] >> (8 * (group % 4))) & 0xffu;
        fp8::dequant_e4m3x16_to_bf16(raw, scale_byte, low, high);
      } else {
        const uint8_t* rope = staging + group_row * 192 + 64 + quad_lane * 32;
        low = *reinterpret_cast<const uint4*>(rope);
        high = *reinterpret_cast<const uint4*>(rope + 16);
      }
      own[gi][0] = low.x;
      own[gi][1] = low.y;
      own[gi][2] = low.z;
      own[gi][3] = low.w;
      own[gi][4] = high.x;
      own[gi][5] = high.y;
      own[gi][6] = high.z;
      own[gi][7] = high.w;
    }
    __syncwarp();
    const uint32_t valid_word = valid_next;
    valid_next = issue_copies(table[stage_index], staging_base, scale_word_base, pair, half, lane, present);
    stage_index = stage_index == 2 ? 0 : stage_index + 1;
    if (warp == kWarps - 1) {
      write_stage(table[stage_index == 0 ? 2 : stage_index - 1], params, ahead_tile, lane);
      ++ahead_tile;
    }
    const bool last_tile = !present;

    // ---- Swap halves with the partner: [i][lane] uint4s, conflict-free.
#pragma unroll
    for (int i = 0; i < 4; ++i)
      swap_mine[i * 32 + lane] = make_uint4(own[i / 2][4 * (i % 2)], own[i / 2][4 * (i % 2) + 1],
                                            own[i / 2][4 * (i % 2) + 2], own[i / 2][4 * (i % 2) + 3]);
    asm volatile("bar.sync %0, 64;" ::"r"(1 + pair) : "memory");
    uint32_t k_frag[2][2][8];  // [0: own tokens, 1: partner's][group][dim pair]
#pragma unroll
    for (int gi = 0; gi < 2; ++gi)
#pragma unroll
      for (int e = 0; e < 8; ++e) k_frag[0][gi][e] = own[gi][e];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint4 v = swap_partner[i * 32 + lane];
      k_frag[1][i / 2][4 * (i % 2)] = v.x;
      k_frag[1][i / 2][4 * (i % 2) + 1] = v.y;
      k_frag[1][i / 2][4 * (i % 2) + 2] = v.z;
      k_frag[1][i / 2][4 * (i % 2) + 3] = v.w;
    }

    // ---- Partial S: heads 32 h .., 16 tokens, 128 dims (Q's A fragments from shared memory, v39's dim
    // order).
    {
      float score[2][2][4] = {};
#pragma unroll
      for (int gi = 0; gi < 2; ++gi) {
#pragma unroll
        for (int mb = 0; mb < 2; ++mb) {
          uint32_t q_pair[2][8];
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            const int row = 32 * half + 16 * mb + group_row + 8 * r;
#pragma unroll
            for (int hh = 0; hh < 2; ++hh) {
              const uint4 chunk = *reinterpret_cast<const uint4*>(
                  shared + kQOffset + q_offset(row, (2 * pair + gi) * 8 + 2 * quad_lane + hh));
              q_pair[r][4 * hh] = chunk.x;
              q_pair[r][4 * hh + 1] = chunk.y;
              q_pair[r][4 * hh + 2] = chunk.z;
              q_pair[r][4 * hh + 3] = chunk.w;
            }
          }
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const uint32_t a[4] = {q_pair[0][2 * j], q_pair[1][2 * j], q_pair[0][2 * j + 1],
                                   q_pair[1][2 * j + 1]};
#pragma unroll
            for (int n = 0; n < 2; ++n)
              mma_bf16_m16n8k16(score[mb][n], a, k_frag[n][gi][2 * j], k_frag[n][gi][2 * j + 1]);
          }
        }
      }
      __syncwarp();  // every lane read its partner's swap bytes before the exchange overwrites them
#pragma unroll
      for (int mb = 0; mb < 2; ++mb)
#pragma unroll
        for (int n = 0; n < 2; ++n)
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            const int head = 16 * mb + group_row + 8 * r;
            const int token = 8 * (n ^ half) + 2 * quad_lane;
            *reinterpret_cast<float2*>(exchange_mine + exchange_offset(head, token)) =
                make_float2(score[mb][n][2 * r], score[mb][n][2 * r + 1]);
          }
    }
    __syncthreads();  // A

    // ---- Softmax of (softmax_head, 4 tokens): the 4 partials, max over the head's 4 threads.
    {
      float score[4] = {0.f, 0.f, 0.f, 0.f};
      const int head_half = softmax_head / 32;
      const int local = softmax_head % 32;
#pragma unroll
      for (int p = 0; p < 4; ++p) {
        const float4 part = *reinterpret_cast<const float4*>(exchange + p * 1024 + (1 - head_half) * 512 +
                                                             exchange_offset(local, softmax_token));
        score[0] += part.x;
        score[1] += part.y;
        score[2] += part.z;
        score[3] += part.w;
      }
      const uint32_t my_valid = valid_word >> softmax_token;
      float tile_max = kInitialRunningMax;
#pragma unroll
      for (int e = 0; e < 4; ++e)
        if ((my_valid >> e) & 1u) tile_max = fmaxf(tile_max, score[e]);
      float rescale = 1.f;
      if (__any_sync(0xffffffffu,
                     scaled_score(tile_max, params.scale_log2) > running_max + kLazyRescaleLog2)) {
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
        rescale = lazy_rescale(tile_max, params.scale_log2, running_max);
        row_sum *= rescale;
      }
      uint32_t packed[2];
#pragma unroll
      for (int e = 0; e < 4; e += 2) {
        const float p0 =
            (my_valid >> e) & 1u ? softmax_weight(score[e], params.scale_log2, running_max) : 0.f;
        const float p1 =
            (my_valid >> (e + 1)) & 1u ? softmax_weight(score[e + 1], params.scale_log2, running_max) : 0.f;
        row_sum += p0 + p1;
        packed[e / 2] = pack_bf16x2(p0, p1);
      }
      *reinterpret_cast<uint2*>(shared + kPOffset + softmax_head * 32 + softmax_token * 2) =
          make_uint2(packed[0], packed[1]);
      if (softmax_token == 0) row_rescale[softmax_head] = rescale;
      if (last_tile && softmax_token == 0) params.out[softmax_head] = row_sum;
    }
    __syncthreads();  // B

    // ---- O rescale, then O += P V over 16 tokens (k columns 0..7: own tokens) and the pair's 128 dims.
    rescale_output_rows(out_acc, row_rescale, 32 * half, group_row);
    uint32_t a[2][4];
#pragma unroll
    for (int mb = 0; mb < 2; ++mb)
      ldmatrix_x4(a[mb], p_base + (32 * half + 16 * mb + a_row_in_group) * 32 + a_chunk * 16);
#pragma unroll
    for (int gi = 0; gi < 2; ++gi)
#pragma unroll
      for (int b = 0; b < 8; ++b) {
        const uint32_t v0 = movmatrix_trans(k_frag[0][gi][b]);
        const uint32_t v1 = movmatrix_trans(k_frag[1][gi][b]);
#pragma unroll
        for (int mb = 0; mb < 2; ++mb) mma_bf16_m16n8k16(out_acc[mb][8 * gi + b], a[mb], v0, v1);
      }
  }
  cp_async_wait_all();
#pragma unroll
  for (int mb = 0; mb < 2; ++mb)
#pragma unroll
    for (int j = 0; j < 16; ++j)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int head = 32 * half + 16 * mb + group_row + 8 * r;
        const int dim = 128 * pair + 64 * (j / 8) + 16 * quad_lane + 2 * (j % 8);
        *reinterpret_cast<float2*>(params.out + 64 + head * 512 + dim) =
            make_float2(out_acc[mb][j][2 * r], out_acc[mb][j][2 * r + 1]);
      }
}

}  // namespace proto

// scripts/micro/run builds every file here into a program; this one only compiles (see the top).
int main() {
  std::printf(
      "mma99_h64_pairs_prototype: compile-only (%d bytes of shared memory); "
      "run scripts/micro/mma99_h64_pairs_prototype for its registers and loop size\n",
      proto::kSharedBytes);
  return 0;
}
