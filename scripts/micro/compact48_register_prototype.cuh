// Compile-only register prototype of a 48-token compute tile for mma99-h32 (docs/perf.md, "Where the capped
// tile's time goes", 2026-12-06). NOT a working kernel: it keeps the 32-token gather (issue_next is called
// twice to stand in for a 64-bit valid word), addresses the exchange and P without swizzles, and its
// shared-memory offsets are the 32-token kernel's. What it answers is whether the 48-token loop (6 token
// blocks of K fragments, S in two halves of 3 blocks, 6 softmax tokens a thread, 3 P V k-steps) fits the
// registers without spills:
//   nvcc -std=c++20 -O3 -gencode arch=compute_90a,code=sm_90a -Iinclude -Isrc -cubin -Xptxas -v \
//       -x cu scripts/micro/compact48_register_prototype.cuh -o /tmp/k48.cubin
// Generated from kernel_compact.cuh at e1326ea by text substitution; .cuh so that CI's build of
// scripts/micro/*.cu (executables) leaves it out.
#include "cuda/decode/kernel_compact.cuh"
namespace smla::detail::decode {
template <class Config>
__global__ void __launch_bounds__(Config::kThreads, Config::kMinBlocksPerSm)
    sparse_mla_decode_compact48_kernel(const DecodeParams params) {
  using namespace smla::detail::mma;
  constexpr int kRowBlocks = Config::kRowBlocks;
  constexpr int kTile = 48;
  constexpr int kBlocks = kTile / 8;                                               // 6 token blocks
  constexpr int kTokensPerThread = Config::kHeadBlock * kTile / Config::kThreads;  // 6
  constexpr int kThreadsPerHead = kTile / kTokensPerThread;                        // 8
  constexpr int kWarpExchangeFloats = Config::kHeadBlock * kTile;

  extern __shared__ __align__(128) uint8_t shared[];
  const uint8_t* q_tile = shared + Config::kQOffset;
  float* exchange = reinterpret_cast<float*>(shared + Config::kExchangeOffset);
  uint8_t* p_tile = shared + Config::kPOffset;
  float* row_rescale = reinterpret_cast<float*>(shared + Config::kRowRescaleOffset);
  float* row_inverse = reinterpret_cast<float*>(shared + Config::kRowInverseOffset);

  const CtaCoordinates coords = cta_coordinates<Config>(params);
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int group_row = lane / 4;  // C fragment rows group_row and group_row + 8 of each row block
  const int quad_lane = lane % 4;
  // Softmax roles.
  const int softmax_head = static_cast<int>(threadIdx.x) / kThreadsPerHead;
  const int softmax_token = static_cast<int>(threadIdx.x) % kThreadsPerHead * kTokensPerThread;

  // Launched as a programmatic dependent of the previous kernel (sm_90+): everything below reads what
  // that kernel may have written (lengths, indices, Q, the caches) or writes what it may still read.
  wait_for_prerequisite_grids();
  // The warps that read slots load their lane's slot of the CTA's first tile beside the list lengths
  // (compact_gather.cuh, FirstTileSlot), so the first gather waits for one memory round trip, not three.
  using Gather = std::conditional_t<Config::kRowTable, RowTableGather<Config>, WarpRowGather<Config>>;
  FirstTileSlot first_tile_slot;
  if (Gather::loads_slots(warp)) first_tile_slot = load_first_tile_slot<Config>(params, coords, lane);
  const RowTiles row = row_tiles<Config>(params, coords);

  const float scale_log2 = params.softmax_scale * kLog2e;
  float running_max = kInitialRunningMax;  // of softmax_head, base-2 scaled domain (same in its threads)
  float row_sum = 0.f;                     // this thread's tokens only; summed over the head's threads
  float out_acc[kRowBlocks][Config::kSliceColBlocks][4];
#pragma unroll
  for (int mb = 0; mb < kRowBlocks; ++mb) {
#pragma unroll
    for (int j = 0; j < Config::kSliceColBlocks; ++j)
      out_acc[mb][j][0] = out_acc[mb][j][1] = out_acc[mb][j][2] = out_acc[mb][j][3] = 0.f;
  }

  // ldmatrix lane roles for the A fragments of P (mma_sm80.cuh).
  const int a_row_in_group = (lane & 7) + ((lane >> 3) & 1) * 8;
  const int a_chunk_offset = lane >> 4;
  const uint32_t p_base = shared_address(p_tile);

  // This warp's staging slice and footer words (scale-group warps).
  const int staging_slice_offset =
      static_cast<int>(Config::kStagingOffset + warp * Config::kFp8StagingSliceBytes);
  const uint8_t* staging_slice = shared + staging_slice_offset;
  const uint32_t staging_slice_base = shared_address(staging_slice);
  const uint32_t* scale_words = reinterpret_cast<const uint32_t*>(shared + Config::kScaleWordOffset) +
                                (warp % Config::kFp8SliceWarps) * Config::kTileTokens;
  const uint32_t scale_word_base = shared_address(scale_words);

  // Prologue (per warp): its Q slice into the Q tile, its slice of the first active tile's rows into
  // staging (after the row table's one barrier, where there is a table); then its Q fragments into
  // registers.
  Gather gather(params, coords, row, shared, staging_slice_base, scale_word_base, warp, lane);
  gather.start(first_tile_slot);
  load_q_slice_async<Config>(params, coords, shared_address(q_tile), warp, lane);
  cp_async_commit();
  gather.issue_first();
  cp_async_wait_all_but_newest();
  __syncwarp();  // the warp's Q slice landed
  // Dim order of S (v39). MMA k step j of the warp's slice takes from lane (g, c) the dims 16 c + 4 j ..
  // 16 c + 4 j + 3 as its logical dims 2 c, 2 c + 1, 8 + 2 c, 9 + 2 c, in Q (A) and K (B) alike, so S is
  // the same sum; a lane's 16 dims are then contiguous in the staging rows (KFragments), and K pairs
  // 2 j, 2 j + 1 are k step j's B fragment as they are.
  uint32_t q_frag[kRowBlocks][Config::kSliceKSteps][4];
#pragma unroll
  for (int mb = 0; mb < kRowBlocks; ++mb) {
    uint32_t q_pair[2][8];  // rows mb * 16 + group_row (+ 8): dims 16 c + 2 k, + 1 of the slice
#pragma unroll
    for (int r = 0; r < 2; ++r) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const uint4 chunk = *reinterpret_cast<const uint4*>(
            q_tile + operand_offset<Config>(mb * kMmaRows + group_row + 8 * r,
                                            warp * Config::kSliceChunks + 2 * quad_lane + half));
        unpack_chunk_words(chunk, &q_pair[r][4 * half]);
      }
    }
#pragma unroll
    for (int j = 0; j < Config::kSliceKSteps; ++j) {
      q_frag[mb][j][0] = q_pair[0][2 * j];
      q_frag[mb][j][1] = q_pair[1][2 * j];
      q_frag[mb][j][2] = q_pair[0][2 * j + 1];
      q_frag[mb][j][3] = q_pair[1][2 * j + 1];
    }
  }

  // ---- Per head (its first softmax thread): lse and the factor that normalizes O (spec section 4, the
  // rules of tile_common.cuh), from the head's running max and its threads' row sums. The head's largest
  // entry contributes >= 1, so l == 0 means no valid entry.
  const bool split = cta_writes_partials<Config>(params);
  const auto finish_rows = [&](float thread_row_sum, float head_max) {
    float head_sum = thread_row_sum;
#pragma unroll
    for (int offset = 1; offset < kThreadsPerHead; offset *= 2)
      head_sum += __shfl_xor_sync(0xffffffffu, head_sum, offset);
    if (softmax_token == 0 && softmax_head < coords.heads_here)
      finish_head_row(params, coords, softmax_head, head_sum, head_max, split, row_inverse);
  };

  const bool any_tile = gather.has_tile();
  while (gather.has_tile()) {
    cp_async_wait_all();
    __syncwarp();  // the warp's staging slice landed
    uint32_t kf[kBlocks][8];
#pragma unroll
    for (int n = 0; n < kBlocks; ++n) {
      const int token = n * kMmaCols + group_row;
      uint4 low, high;
      if (warp < Config::kFp8SliceWarps) {
        const uint4 raw =
            *reinterpret_cast<const uint4*>(staging_slice + token * kQuantGroup + quad_lane * kChunkBytes);
        const uint32_t scale_byte = (scale_words[token] >> (8 * (warp % 4))) & 0xffu;
        fp8::dequant_e4m3x16_to_bf16(raw, scale_byte, low, high);
      } else {
        const uint8_t* rope = staging_slice + token * kRopeDim * 2 + quad_lane * 2 * kChunkBytes;
        low = *reinterpret_cast<const uint4*>(rope);
        high = *reinterpret_cast<const uint4*>(rope + kChunkBytes);
      }
      unpack_chunk_words(low, &kf[n][0]);
      unpack_chunk_words(high, &kf[n][4]);
    }
    __syncwarp();  // every lane read its staging bytes; the slice is free for the next tile's copies
    const uint64_t valid_word = gather.issue_next() | (uint64_t(gather.issue_next()) << 32);
    const bool last_tile = !gather.has_tile();  // uniform over the CTA

    // ---- Partial S in two halves of 3 token blocks.
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float score[kRowBlocks][3][4];
#pragma unroll
      for (int mb = 0; mb < kRowBlocks; ++mb) {
#pragma unroll
        for (int n = 0; n < 3; ++n)
          score[mb][n][0] = score[mb][n][1] = score[mb][n][2] = score[mb][n][3] = 0.f;
      }
#pragma unroll
      for (int j = 0; j < Config::kSliceKSteps; ++j) {
#pragma unroll
        for (int n = 0; n < 3; ++n) {
#pragma unroll
          for (int mb = 0; mb < kRowBlocks; ++mb)
            mma_bf16_m16n8k16(score[mb][n], q_frag[mb][j], kf[3 * half + n][2 * j],
                              kf[3 * half + n][2 * j + 1]);
        }
      }
#pragma unroll
      for (int mb = 0; mb < kRowBlocks; ++mb) {
#pragma unroll
        for (int n = 0; n < 3; ++n) {
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            const int head = mb * kMmaRows + group_row + 8 * r;
            *reinterpret_cast<float2*>(exchange + warp * kWarpExchangeFloats + head * kTile +
                                       (3 * half + n) * 8 + 2 * quad_lane) =
                make_float2(score[mb][n][2 * r], score[mb][n][2 * r + 1]);
          }
        }
      }
    }
    __syncthreads();  // every warp's partial S is in the exchange buffer

    // ---- Online softmax of (softmax_head, softmax_token..+kTokensPerThread): the 8 partials summed in
    // warp order, the tile max over the head's threads, then P (bf16, for the MMA) and the row factor.
    {
      float score[kTokensPerThread];
      const float* column = exchange + softmax_head * kTile + softmax_token;
#pragma unroll
      for (int e = 0; e < kTokensPerThread; ++e) score[e] = 0.f;
#pragma unroll
      for (int w = 0; w < Config::kNumWarps; ++w) {
        const float2 a = *reinterpret_cast<const float2*>(column + w * kWarpExchangeFloats);
        const float4 b = *reinterpret_cast<const float4*>(column + w * kWarpExchangeFloats + 2);
        score[0] += a.x;
        score[1] += a.y;
        score[2] += b.x;
        score[3] += b.y;
        score[4] += b.z;
        score[5] += b.w;
      }
      const uint64_t my_valid = valid_word >> softmax_token;
      float tile_max = kInitialRunningMax;
#pragma unroll
      for (int e = 0; e < kTokensPerThread; ++e) {
        if ((my_valid >> e) & 1u) tile_max = fmaxf(tile_max, score[e]);
      }
      // A head moves its running max (lazy_rescale) only when one of its threads' own maxima would, since
      // scale > 0 gives max(score) * scale == max(score * scale). When no head of the warp moves (most tiles
      // after a CTA's first), the head's tile max is not needed and its shuffles stay off the chain to P. The
      // result is the same bits either way (rescale 1, running_max kept), because the vote's test is
      // lazy_rescale's own compare written out (a helper shared by both changed the SASS of every mma.sync
      // kernel). Only the 32-head block votes: its CTAs walk many tiles, where the vote saves 0.4-1.8 %
      // (v84c, docs/perf.md); a 16-head CTA walks one or two, its max moves in most of them, and there the
      // vote measured +1.5-2 % (v84).
      constexpr bool kVoteOnMaxMoves = Config::kHeadBlock == 32;
      float rescale = 1.f;
      if (!kVoteOnMaxMoves ||
          __any_sync(0xffffffffu, scaled_score(tile_max, scale_log2) > running_max + kLazyRescaleLog2)) {
#pragma unroll
        for (int offset = 1; offset < kThreadsPerHead; offset *= 2)
          tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, offset));
        // The sentinel stays hugely negative.
        rescale = lazy_rescale(tile_max, scale_log2, running_max);
        row_sum *= rescale;
      }
      // P = exp2(score * scale_log2 - max) for valid entries, exactly 0 for masked ones; the sum uses the
      // fp32 values (lse accuracy, spec section 8), the MMA the bf16 ones.
      uint32_t packed[kTokensPerThread / 2];
#pragma unroll
      for (int e = 0; e < kTokensPerThread; e += 2) {
        const float p0 = (my_valid >> e) & 1u ? softmax_weight(score[e], scale_log2, running_max) : 0.f;
        const float p1 =
            (my_valid >> (e + 1)) & 1u ? softmax_weight(score[e + 1], scale_log2, running_max) : 0.f;
        row_sum += p0 + p1;
        packed[e / 2] = pack_bf16x2(p0, p1);
      }
      uint8_t* p_address = p_tile + softmax_head * kTile * 2 + softmax_token * 2;
      *reinterpret_cast<uint32_t*>(p_address) = packed[0];
      *reinterpret_cast<uint2*>(p_address + 4) = make_uint2(packed[1], packed[2]);
      if (softmax_token == 0) row_rescale[softmax_head] = rescale;
      // The last tile's softmax also ends the head's row (lse, and the factor that normalizes O), so that
      // barrier B publishes it and the epilogue needs no barrier of its own.
      if (last_tile) finish_rows(row_sum, running_max);
    }
    __syncthreads();  // P and the row factors (after the last tile: row_inverse too) are in shared memory

    // ---- O rescale (lazy: skipped when no row of the warp moved its max), then O += P V for every head
    // and this warp's 64 dims (V = K, from the fragments in registers).
    rescale_output_rows(out_acc, row_rescale, 0, group_row);
#pragma unroll
    for (int k_step = 0; k_step < kTile / 16; ++k_step) {
      uint32_t a[kRowBlocks][4];
#pragma unroll
      for (int mb = 0; mb < kRowBlocks; ++mb) {
        ldmatrix_x4(a[mb], p_base + (mb * kMmaRows + a_row_in_group) * kTile * 2 +
                               (2 * k_step + a_chunk_offset) * 16);
      }
      // V's B fragment of dim block b: K pair b of token blocks 2 k_step and 2 k_step + 1, transposed (lane
      // (g, c) then holds tokens 2 c, 2 c + 1 of dim 16 (g / 2) + 2 b + g % 2), so O block b of lane (g, c)
      // holds dims 16 c + 2 b, + 1 of the slice.
#pragma unroll
      for (int b = 0; b < Config::kSliceColBlocks; ++b) {
        const uint32_t v0 = movmatrix_trans(kf[2 * k_step][b]);
        const uint32_t v1 = movmatrix_trans(kf[2 * k_step + 1][b]);
#pragma unroll
        for (int mb = 0; mb < kRowBlocks; ++mb) mma_bf16_m16n8k16(out_acc[mb][b], a[mb], v0, v1);
      }
    }
  }

  cp_async_wait_all();       // no copy may outlive the CTA (Q is still pending when no tile was active)
  allow_dependent_launch();  // the combine (or the next call) may take SMs this grid leaves free
  if (!any_tile) {
    finish_rows(0.f, running_max);  // every head of the block empty
    __syncthreads();                // row factors published
  }
  // O rows: each warp its own 64 dims (store_rows_per_warp), with no barrier after barrier B.
  store_rows_per_warp<Config>(params, coords, shared, out_acc, row_inverse, split, warp, lane);
}

template __global__ void sparse_mla_decode_compact48_kernel<CompactConfigHeads32>(const DecodeParams);
}  // namespace smla::detail::decode
