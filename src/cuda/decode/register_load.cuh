// Global loads into registers for the 99 KB-class gather (compact_gather.cuh, RowTableGather<Config, true>,
// its form for CTAs of many tiles): a lane's share of the next tile's rows goes straight to the registers it
// is dequantized from, not through a shared-memory staging slice. On Hopper a warp's cp.async of 16 bytes a
// lane costs ~30 cycles of issue with eight warps copying at once, a load into registers ~2-3
// (scripts/micro/copy_issue_rate.cu, docs/perf.md).
// A false `valid` loads nothing and yields zeros, so a masked entry's cache bytes are never read.
#pragma once

#include <cstdint>

namespace smla::detail::decode {

// 16 bytes read once by this CTA (not kept in L1), or zeros.
__device__ __forceinline__ uint4 load_row_chunk_or_zero(const void* source, bool valid) {
  uint4 value;
  // volatile: the load is issued here, one tile ahead of its use, not sunk to the use.
  asm volatile(
      "{\n"
      "  .reg .pred p;\n"
      "  setp.ne.b32 p, %5, 0;\n"
      "  mov.b32 %0, 0;\n"
      "  mov.b32 %1, 0;\n"
      "  mov.b32 %2, 0;\n"
      "  mov.b32 %3, 0;\n"
      "  @p ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
      "}\n"
      : "=r"(value.x), "=r"(value.y), "=r"(value.z), "=r"(value.w)
      : "l"(source), "r"(static_cast<uint32_t>(valid)));
  return value;
}

// 4 bytes (a word of a token's scale footer), or zero.
__device__ __forceinline__ uint32_t load_footer_word_or_zero(const void* source, bool valid) {
  uint32_t value;
  asm volatile(
      "{\n"
      "  .reg .pred p;\n"
      "  setp.ne.b32 p, %2, 0;\n"
      "  mov.b32 %0, 0;\n"
      "  @p ld.global.nc.L1::no_allocate.u32 %0, [%1];\n"
      "}\n"
      : "=r"(value)
      : "l"(source), "r"(static_cast<uint32_t>(valid)));
  return value;
}

}  // namespace smla::detail::decode
