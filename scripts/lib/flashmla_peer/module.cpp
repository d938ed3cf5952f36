// The Python module `flash_mla.cuda` of the FlashMLA peer build (scripts/peer-flashmla-build): FlashMLA's
// sparse decode entry alone, the one `flash_mla.flash_mla_with_kvcache` calls with `indices`. FlashMLA's own
// api.cpp also binds dense decode and the prefill kernels, which this build does not compile.
#include <pybind11/pybind11.h>

#include "api/sparse_decode.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() =
      "FlashMLA's sm90 sparse FP8 decode, built for smla's side-by-side (bench/flashmla_side_by_side.py)";
  m.def("sparse_decode_fwd", &sparse_attn_decode_interface);
}
