// Definitions for the kernels that FlashMLA's sparse decode entry (csrc/api/sparse_decode.h) can dispatch to
// but the peer build leaves out: the sm100 kernels, and DeepSeek V3.2's 656-byte format on sm90. The entry
// picks them only on another GPU or for that format, which the side-by-side never asks for; each one raises
// a Python RuntimeError saying what was not built, instead of leaving an undefined symbol that would stop
// the module from loading. The declarations are FlashMLA's (the templates' explicit specializations have the
// instantiations' symbols).
#include <stdexcept>
#include <string>

#include "params.h"
#include "sm100/decode/head64/kernel.h"
#include "sm100/prefill/sparse/fwd_for_small_topk/head128/phase1.h"
#include "sm90/decode/sparse_fp8/splitkv_mla.h"

namespace {

[[noreturn]] void not_built(const char* kernel) {
  throw std::runtime_error(
      std::string("FlashMLA peer build: ") + kernel +
      " is not compiled (scripts/peer-flashmla-build builds the sm90 MODEL1 sparse decode, "
      "64 and 128 heads, only)");
}

}  // namespace

namespace sm90::decode::sparse_fp8 {

template <>
void run_flash_splitkv_mla_fp8_sparse_kernel<ModelType::V32, 64>(const SparseAttnDecodeParams&) {
  not_built("the sm90 V3.2 sparse decode (64 heads)");
}

template <>
void run_flash_splitkv_mla_fp8_sparse_kernel<ModelType::V32, 128>(const SparseAttnDecodeParams&) {
  not_built("the sm90 V3.2 sparse decode (128 heads)");
}

}  // namespace sm90::decode::sparse_fp8

namespace sm100::decode::head64 {

template <>
void run_flash_splitkv_mla_fp8_sparse_kernel<ModelType::V32>(const SparseAttnDecodeParams&) {
  not_built("the sm100 sparse decode (V3.2, 64 heads)");
}

template <>
void run_flash_splitkv_mla_fp8_sparse_kernel<ModelType::MODEL1>(const SparseAttnDecodeParams&) {
  not_built("the sm100 sparse decode (MODEL1, 64 heads)");
}

}  // namespace sm100::decode::head64

namespace sm100::fwd_for_small_topk::head128 {

template <>
void run_fwd_for_small_topk_phase1_kernel<SparseAttnFwdMode::DecodeWithSplitKV, 512>(
    const SparseFwdArgT<SparseAttnFwdMode::DecodeWithSplitKV>&) {
  not_built("the sm100 sparse decode (MODEL1, 128 heads)");
}

}  // namespace sm100::fwd_for_small_topk::head128
