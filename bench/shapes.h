// What smla-bench measures: the named per-layer decode shapes of DSv4 (spec section 7), the layer mix of
// a whole decode step, and the bytes/FLOPs model of spec section 9.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace smla_bench {

// One decode call's geometry, without the batch size.
struct LayerShape {
  std::string name;
  int heads = 0;
  int seq_q = 1;
  int topk = 0;  // main (sliding-window) index width
  int main_page_block_size = 0;
  int extra_topk = 0;  // 0 = no extra cache
  int extra_page_block_size = 0;
};

// The named shapes of `--shape`, in their documented order.
const std::vector<LayerShape>& named_shapes();
// Looks a named shape up; false when the name is unknown.
bool find_named_shape(const std::string& name, LayerShape* shape);
// "flash-swa, flash-c4, ..." for messages and --help.
std::string named_shape_list();

// One layer type of a whole-model decode step: its shape, how many layers have it, and the valid
// lengths and cache sizes that a context of `context` tokens implies for one sequence.
struct ModelLayerType {
  LayerShape shape;
  int num_layers = 0;
  int main_length = 0;              // topk_length of every row
  int extra_length = 0;             // extra_topk_length of every row
  int64_t main_tokens_per_seq = 0;  // tokens one sequence keeps in this layer's main cache
  int64_t extra_tokens_per_seq = 0;
};

// Layer types of one decode step of `model` ("dsv4-flash" or "dsv4-pro") at `context` tokens (spec
// section 7). `heads` > 0 overrides the local head count (tensor parallelism); `main_page_block_size` > 0
// overrides P of the SWA cache. False with a message for an unknown model or a context < 1.
bool model_layer_types(const std::string& model, int64_t context, int heads, int main_page_block_size,
                       std::vector<ModelLayerType>* types, std::string* error);

// Spec section 9: what one decode call must move and compute.
inline constexpr double kRecordBytesPerToken = 584.0;  // records are read whole
inline constexpr double kQueryBytesPerHead = 1024.0;   // 512 bf16
inline constexpr double kOutputBytesPerHead = 1024.0;  // 512 bf16
inline constexpr double kIndexBytes = 4.0;
// H100 numbers of spec section 9, used by --roofline and for the compute floor of every row (the
// bench does not measure tensor throughput: it would need a GEMM library the bench does not link).
inline constexpr double kSpecCopyBytesPerSecond = 3.0e12;
inline constexpr double kSpecDenseBf16FlopsPerSecond = 800e12;

// Bytes of one call: rows * (h*(q + out) + 4*(topk + extra_topk)) + 584 * (tokens attended by all rows).
double call_bytes(int64_t rows, int heads, int topk, int extra_topk, int64_t attended_tokens);
// FLOPs of one call: 2 * h * 1024 * tokens (QK^T and PV over 512 dims each).
double call_flops(int heads, int64_t attended_tokens);

}  // namespace smla_bench
