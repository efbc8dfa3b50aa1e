// A prepared execution plan: the kernel calls of one Q-model forward for one
// input shape, recorded once and replayed by one call.
//
// A plan is a list of steps over tensors. Every activation is an NHWC int8 /
// uint8 tensor (a 2-D (N, C) activation is N x 1 x 1 x C) at a fixed offset of
// an arena, placed when the plan is finalized and allocated by the first run
// (kept for the next ones); tensors whose lifetimes do not overlap share bytes
// (greedy placement, largest first). The plan's
// inputs are float32 NCHW arrays (read by Quantize steps) and its outputs are
// either float32 NCHW arrays (written by Dequantize steps) or quantized tensors
// copied out of the arena at the end.
//
// Each step calls the public kernel of its op (conv2d.h, depthwise.h, gemm.h,
// elementwise.h, pooling.h, quantize.h, concat.h) with the arguments the layer
// by layer path passes, in the same order, so a plan's outputs equal that
// path's bit for bit. The only arithmetic of its own is a clamp (narrow
// quantized ranges, ReLU / ReLU6 on quantized values: max(lo, min(hi, q)), as
// numpy's clip) and the NHWC -> NCHW reordering of a flatten (a copy).
//
// Every step's geometry is checked when it is added (the kernels' own checks:
// channels, output sizes, ArgumentError naming the argument), and every
// tensor's size is fixed by then, so run() cannot write outside the arena.
//
// Batches. Every step treats the images of a batch independently (each
// kernel's result for an image depends on that image's bytes only: per-pixel
// quantize, per-image pooling windows, GEMM rows with full-K accumulation), so
// a contiguous slice of the batch can run through all the steps on its own
// and produce the same bytes. run() uses that when every tensor has the same
// batch size N (the usual plan): with T threads and N >= T it gives each
// thread a slice of N / T whole images, run through all the steps with the
// kernels single-threaded inside (nested parallel_for runs serially) and a
// per-thread arena laid out for the slice: no synchronisation between layers.
// The N % T images left over then run with each layer split over the threads,
// as a batch smaller than T always does (a layer split is what keeps all
// threads busy on one image). A thread (or a single thread's whole batch)
// takes its images a few at a time, as many as fit a 4 MB arena
// (kChunkArenaBytes in plan.cc, measured there).
#ifndef MEGQ_PLAN_H_
#define MEGQ_PLAN_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "megq/aligned_buffer.h"
#include "megq/concat.h"
#include "megq/conv2d.h"
#include "megq/depthwise.h"
#include "megq/elementwise.h"
#include "megq/gemm.h"
#include "megq/pooling.h"

namespace megq {

class Plan {
 public:
  // -- tensors ----------------------------------------------------------------
  // A new activation tensor (N x H x W x C bytes); returns its id.
  int add_tensor(int n, int h, int w, int c, bool is_signed);
  // A float32 NCHW input of the plan (N x C x H x W); returns its input index.
  int add_input(int n, int c, int h, int w);
  // A quantized input: its bytes (tensor `t`'s N x H x W x C, contiguous) are copied into `t` by a step added
  // now; returns its input index.
  int add_quantized_input(int t);

  // -- steps (each checks its geometry and throws ArgumentError) ----------------
  // q = clamp(round_half_away(x / s) + z): input `input` -> tensor `out` (N, H, W, C).
  void add_quantize(int input, int out, float scale, int32_t zero_point);
  // The packed weights must outlive the plan (the binding keeps their Python objects).
  void add_conv2d(const PackedConv2dWeights* w, int in, int out, const Conv2dParams& params,
                  const GemmOutput& output);
  void add_depthwise(const PackedDepthwiseWeights* w, int in, int out, const DepthwiseParams& params);
  // (N, K) x packed (K, Cout): tensors are N x 1 x 1 x K and N x 1 x 1 x Cout.
  void add_gemm(const PackedGemmWeights* w, int in, int out, const GemmOutput& output);
  // kind: 0 add, 1 fuse_add_relu, 2 mul (elementwise.h); a, b, out of one shape.
  void add_elementwise(int kind, int a, const TensorQParams& qa, int b, const TensorQParams& qb, int out,
                       const TensorQParams& qy);
  void add_pool(int in, int out, const Pool2dParams& params, int32_t zero_point);
  void add_global_avg_pool(int in, int out);
  // Channel concat of `ins` (same N, H, W) into `out`.
  void add_concat(const std::vector<int>& ins, const std::vector<float>& scales,
                  const std::vector<int32_t>& zero_points, int out, float out_scale, int32_t out_zero_point);
  // out = max(lo, min(hi, in)) elementwise (may be in place: out == in).
  void add_clamp(int in, int out, int32_t lo, int32_t hi);
  // (N, H, W, C) -> (N, 1, 1, C*H*W) with the features in NCHW order (a flatten of the logical NCHW tensor).
  void add_flatten(int in, int out);
  // float32 NCHW output `output` (index returned) = float32(q - z) * s of tensor `in`.
  int add_dequantize(int in, float scale, int32_t zero_point);
  // Marks tensor `t` as a quantized output of the plan (copied out by run()); returns its output index.
  int add_quantized_output(int t);

  // Places the tensors in the arena (call once, after the last step).
  void finalize();

  // -- execution --------------------------------------------------------------
  struct OutputSlot {
    bool is_float;
    int tensor;  // the tensor read (the dequantized tensor for float outputs)
  };
  const std::vector<OutputSlot>& outputs() const { return outputs_; }
  struct TensorDesc {
    int n, h, w, c;
    bool is_signed;
    int64_t bytes() const { return int64_t{n} * h * w * c; }
  };
  const TensorDesc& tensor(int id) const { return tensors_[id]; }
  // N, C, H, W of a float input; empty for a quantized one.
  const std::vector<int>& input_shape(int input) const { return inputs_[input]; }
  // The tensor a quantized input fills, -1 for a float input.
  int input_tensor(int input) const { return input_tensors_[input]; }
  int num_inputs() const { return static_cast<int>(inputs_.size()); }
  int num_tensors() const { return static_cast<int>(tensors_.size()); }
  // The arena of the whole batch run in one pass (a run by slices uses one
  // arena per thread, each laid out for the images it holds at a time).
  size_t arena_bytes() const { return arena_bytes_; }
  int num_steps() const { return static_cast<int>(steps_.size()); }

  // How run() splits the batch (see "Batches" above): kAuto picks; kLayer runs
  // the whole batch step by step, each kernel splitting its layer over the
  // threads; kBatch gives threads slices of whole images (the leftover images
  // still run layer-split). Every choice gives the same bytes.
  enum class Split { kAuto, kLayer, kBatch };
  // Whether the batch can be split (every tensor and input has the same N >= 1).
  bool splittable() const { return batch_ > 0; }

  // Runs every step. inputs[i]: C-contiguous float32 N x C x H x W (the shape
  // given to add_input), or the N x H x W x C bytes of a quantized input;
  // outputs[j]: C-contiguous buffer of output j (float32
  // N x C x H x W for a float output, the tensor's N x H x W x C bytes for a
  // quantized one). Calls from several threads run one at a time (one arena).
  // step_seconds (optional): receives each step's wall time (for profiling; the outputs are the same); a
  // profiled run splits layers (one timeline).
  // chunk > 0: a thread runs its images `chunk` at a time through all the
  // steps (a smaller arena that may stay in cache); 0 picks (kLayer: the
  // whole batch at once; otherwise by the arena budget above).
  void run(const std::vector<const void*>& inputs, const std::vector<void*>& outputs,
           std::vector<double>* step_seconds = nullptr, Split split = Split::kAuto, int chunk = 0);
  // A short name of step i's op ("conv2d", "depthwise", "add", ...).
  const char* step_name(int i) const;

 private:
  enum class Kind { kCopyIn, kQuantize, kConv2d, kDepthwise, kGemm, kElementwise, kPool, kGlobalAvgPool,
                    kConcat, kClamp, kFlatten, kDequantize };
  struct Step {
    Kind kind;
    std::vector<int> ins;  // tensor ids (input index for kQuantize)
    int out = -1;          // tensor id (output index for kDequantize)
    const PackedConv2dWeights* conv = nullptr;
    const PackedDepthwiseWeights* dw = nullptr;
    const PackedGemmWeights* gemm = nullptr;
    Conv2dParams conv_params;
    DepthwiseParams dw_params;
    GemmOutput gemm_output;
    Pool2dParams pool;
    int kind_arg = 0;        // elementwise kind
    TensorQParams qa{}, qb{}, qy{};
    float scale = 1.0f;      // quantize / dequantize / concat output
    int32_t zero_point = 0;  // quantize / dequantize / pool / concat output
    int32_t lo = 0, hi = 0;  // clamp
    std::vector<float> scales;
    std::vector<int32_t> zero_points;
  };
  // Tensor placement for a batch of `images` (all of it when the plan is not splittable).
  struct Layout {
    std::vector<int64_t> offsets;
    size_t bytes = 0;
  };
  Layout place(int images) const;
  const Layout& layout_for(int images);
  // Runs every step on images [n0, n0 + count) with the tensors of `layout` in `arena`.
  void run_steps(const std::vector<const void*>& inputs, const std::vector<void*>& outputs, int n0, int count,
                 uint8_t* arena, const Layout& layout, std::vector<double>* step_seconds);
  // Images [n0, n0 + count) in chunks of `chunk`, in `arena` (grown as needed).
  void run_chunks(const std::vector<const void*>& inputs, const std::vector<void*>& outputs, int n0, int count,
                  int chunk, AlignedBuffer& arena);
  void check_tensor(int id, const char* what) const;
  void expect_shape(int id, int n, int h, int w, int c, bool is_signed, const char* op) const;
  void touch(int id);
  Step& push_tensor_step(Kind kind, const std::vector<int>& ins, int out);

  std::vector<TensorDesc> tensors_;
  std::vector<std::vector<int>> inputs_;  // N, C, H, W (float inputs)
  std::vector<int> input_tensors_;        // -1, or the tensor a quantized input fills
  std::vector<Step> steps_;
  std::vector<OutputSlot> outputs_;
  std::vector<int> first_use_, last_use_;  // step index range of each tensor's lifetime
  size_t arena_bytes_ = 0;
  bool finalized_ = false;
  int batch_ = -1;  // the N of every tensor and input, -1 if they differ (or N = 0): no batch split
  std::map<int, Layout> layouts_;                   // by image count (the whole batch's placed by finalize)
  std::vector<std::unique_ptr<AlignedBuffer>> arenas_;  // arenas_[0]: the caller's; then one per extra worker
  std::mutex run_mutex_;
};

}  // namespace megq

#endif  // MEGQ_PLAN_H_
