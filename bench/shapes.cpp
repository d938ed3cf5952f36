#include "shapes.h"

#include <algorithm>

namespace smla_bench {
namespace {

// SWA cache of SGLang (P = 256); C4 compressed cache P = 64; C128 compressed cache P = 2 (spec section 2).
constexpr int kSwaPageBlockSize = 256;
constexpr int kC4PageBlockSize = 64;
constexpr int kC128PageBlockSize = 2;
constexpr int kSlidingWindow = 128;

std::vector<LayerShape> make_named_shapes() {
  // name, heads, seq_q, topk, P main, extra_topk, P extra
  return {
      {"flash-swa", 64, 1, kSlidingWindow, kSwaPageBlockSize, 0, 0},
      {"flash-c4", 64, 1, kSlidingWindow, kSwaPageBlockSize, 512, kC4PageBlockSize},
      {"flash-c4-tp4", 16, 1, kSlidingWindow, kSwaPageBlockSize, 512, kC4PageBlockSize},
      {"flash-c4-tp8", 8, 1, kSlidingWindow, kSwaPageBlockSize, 512, kC4PageBlockSize},
      // 64k context: all 65536/128 = 512 compressed entries.
      {"flash-c128-64k", 64, 1, kSlidingWindow, kSwaPageBlockSize, 512, kC128PageBlockSize},
      // MTP: the speculative token is a second query row of the same sequence.
      {"flash-c4-mtp", 64, 2, kSlidingWindow, kSwaPageBlockSize, 512, kC4PageBlockSize},
      {"pro-c4", 128, 1, kSlidingWindow, kSwaPageBlockSize, 1024, kC4PageBlockSize},
      // 1M context: 2^20/128 = 8192 compressed entries.
      {"pro-c128-1m", 128, 1, kSlidingWindow, kSwaPageBlockSize, 8192, kC128PageBlockSize},
  };
}

int round_up(int64_t value, int64_t multiple) {
  return static_cast<int>((value + multiple - 1) / multiple * multiple);
}

}  // namespace

const std::vector<LayerShape>& named_shapes() {
  static const std::vector<LayerShape> shapes = make_named_shapes();
  return shapes;
}

bool find_named_shape(const std::string& name, LayerShape* shape) {
  for (const LayerShape& candidate : named_shapes()) {
    if (candidate.name == name) {
      *shape = candidate;
      return true;
    }
  }
  return false;
}

std::string named_shape_list() {
  std::string list;
  for (const LayerShape& shape : named_shapes()) {
    if (!list.empty()) list += ", ";
    list += shape.name;
  }
  return list;
}

bool model_layer_types(const std::string& model, int64_t context, int heads, int main_page_block_size,
                       std::vector<ModelLayerType>* types, std::string* error) {
  if (context < 1) {
    *error = "--context must be >= 1 token";
    return false;
  }
  int model_heads = 0, index_topk = 0, swa_layers = 0, c4_layers = 0, c128_layers = 0;
  if (model == "dsv4-flash") {
    model_heads = 64, index_topk = 512, swa_layers = 2, c4_layers = 21, c128_layers = 20;
  } else if (model == "dsv4-pro") {
    model_heads = 128, index_topk = 1024, swa_layers = 0, c4_layers = 30, c128_layers = 31;
  } else {
    *error = "unknown --model '" + model + "'; valid: dsv4-flash, dsv4-pro";
    return false;
  }
  const int h = heads > 0 ? heads : model_heads;
  const int main_p = main_page_block_size > 0 ? main_page_block_size : kSwaPageBlockSize;
  const int window_length = static_cast<int>(std::min<int64_t>(context, kSlidingWindow));
  const int64_t c4_entries = context / 4;
  const int64_t c128_entries = context / 128;
  // An engine's SWA cache keeps the window of each sequence; the compressed caches keep every entry.
  const int64_t swa_tokens = window_length;

  types->clear();
  if (swa_layers > 0) {
    ModelLayerType swa;
    swa.shape = {"swa", h, 1, kSlidingWindow, main_p, 0, 0};
    swa.num_layers = swa_layers;
    swa.main_length = window_length;
    swa.main_tokens_per_seq = swa_tokens;
    types->push_back(swa);
  }
  ModelLayerType c4;
  c4.shape = {"c4", h, 1, kSlidingWindow, main_p, index_topk, kC4PageBlockSize};
  c4.num_layers = c4_layers;
  c4.main_length = window_length;
  c4.extra_length = static_cast<int>(std::min<int64_t>(c4_entries, index_topk));
  c4.main_tokens_per_seq = swa_tokens;
  c4.extra_tokens_per_seq = std::max<int64_t>(c4_entries, 1);
  types->push_back(c4);

  ModelLayerType c128;
  // Every compressed entry is attended; the index width is padded to a multiple of 64 (one tile).
  c128.shape = {
      "c128", h, 1, kSlidingWindow, main_p, std::max(64, round_up(c128_entries, 64)), kC128PageBlockSize};
  c128.num_layers = c128_layers;
  c128.main_length = window_length;
  c128.extra_length = static_cast<int>(c128_entries);
  c128.main_tokens_per_seq = swa_tokens;
  c128.extra_tokens_per_seq = std::max<int64_t>(c128_entries, 1);
  types->push_back(c128);
  return true;
}

double call_bytes(int64_t rows, int heads, int topk, int extra_topk, int64_t attended_tokens) {
  const double per_row = heads * (kQueryBytesPerHead + kOutputBytesPerHead) +
                         kIndexBytes * (static_cast<double>(topk) + extra_topk);
  return static_cast<double>(rows) * per_row + kRecordBytesPerToken * static_cast<double>(attended_tokens);
}

double call_flops(int heads, int64_t attended_tokens) {
  return 2.0 * heads * 1024.0 * static_cast<double>(attended_tokens);
}

}  // namespace smla_bench
