// Execution plan (plan.h): step checks, arena placement, replay.
#include "megq/plan.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>
#include <numeric>
#include <string>

#include "megq/limits.h"
#include "megq/qparams.h"
#include "megq/quantize.h"
#include "megq/thread_pool.h"

namespace megq {

namespace {

constexpr int64_t kArenaAlign = 64;  // every tensor starts on a cache line
// A thread running whole images takes as many at a time as fit this arena size (at least one, at most its
// slice). Measured at 224x224 on a Zen 4 (1 MB L2 per core, 32 MB shared L3), batch 8, 1 thread: MobileNetV2
// (1.5 MB of activations per image) spent ~5 % less CPU time in chunks of 2 images than in one pass of 8;
// ResNet-18 (1.0 MB per image) the same in chunks of 2 or 4 as in one pass, 2 % more in chunks of 1 (its GEMMs
// then reuse each weight panel over fewer rows). Small inputs keep their slice whole.
constexpr size_t kChunkArenaBytes = size_t{4} << 20;

std::string shape_str(int n, int h, int w, int c) {
  return "(" + std::to_string(n) + ", " + std::to_string(h) + ", " + std::to_string(w) + ", " + std::to_string(c) +
         ")";
}

template <typename T>
void clamp_bytes(const T* in, T* out, int64_t count, T lo, T hi) {
  for (int64_t i = 0; i < count; ++i) out[i] = std::max(lo, std::min(hi, in[i]));
}

}  // namespace

int Plan::add_tensor(int n, int h, int w, int c, bool is_signed) {
  if (finalized_) throw ArgumentError("plan: already finalized");
  if (n < 0 || h < 1 || w < 1 || c < 1) throw ArgumentError("shape: invalid tensor shape " + shape_str(n, h, w, c));
  check_output_size("shape", "plan", {n > 0 ? n : 1, h, w, c}, 1);
  tensors_.push_back(TensorDesc{n, h, w, c, is_signed});
  first_use_.push_back(-1);
  last_use_.push_back(-1);
  return static_cast<int>(tensors_.size()) - 1;
}

int Plan::add_input(int n, int c, int h, int w) {
  if (finalized_) throw ArgumentError("plan: already finalized");
  if (n < 0 || c < 1 || h < 1 || w < 1) throw ArgumentError("shape: invalid input shape");
  check_output_size("shape", "plan", {n > 0 ? n : 1, c, h, w}, 4);
  inputs_.push_back({n, c, h, w});
  input_tensors_.push_back(-1);
  return static_cast<int>(inputs_.size()) - 1;
}

int Plan::add_quantized_input(int t) {
  check_tensor(t, "t");
  const int index = num_inputs();
  Step st{Kind::kCopyIn};
  st.ins = {index};
  st.out = t;
  touch(t);
  steps_.push_back(std::move(st));
  inputs_.push_back({});
  input_tensors_.push_back(t);
  return index;
}

void Plan::check_tensor(int id, const char* what) const {
  if (id < 0 || id >= static_cast<int>(tensors_.size())) {
    throw ArgumentError(std::string(what) + ": no tensor " + std::to_string(id) + " in this plan");
  }
}

void Plan::expect_shape(int id, int n, int h, int w, int c, bool is_signed, const char* op) const {
  const TensorDesc& t = tensors_[id];
  if (t.n != n || t.h != h || t.w != w || t.c != c || t.is_signed != is_signed) {
    throw ArgumentError(std::string("out: ") + op + " produces " + (is_signed ? "int8 " : "uint8 ") +
                        shape_str(n, h, w, c) + ", the plan's tensor is " + (t.is_signed ? "int8 " : "uint8 ") +
                        shape_str(t.n, t.h, t.w, t.c));
  }
}

// Records that the step being added (index steps_.size()) reads or writes `id`.
void Plan::touch(int id) {
  const int step = static_cast<int>(steps_.size());
  if (first_use_[id] < 0) first_use_[id] = step;
  last_use_[id] = step;
}

// Appends a step that reads the tensors `ins` and writes the tensor `out`, recording their lifetimes; the caller
// fills the step's own fields through the returned reference.
Plan::Step& Plan::push_tensor_step(Kind kind, const std::vector<int>& ins, int out) {
  for (int id : ins) touch(id);
  touch(out);
  Step st{kind};
  st.ins = ins;
  st.out = out;
  steps_.push_back(std::move(st));
  return steps_.back();
}

void Plan::add_quantize(int input, int out, float scale, int32_t zero_point) {
  if (input < 0 || input >= num_inputs() || input_tensors_[input] >= 0) {
    throw ArgumentError("input: no such float input in this plan");
  }
  check_tensor(out, "out");
  const TensorDesc& o = tensors_[out];
  check_scale("scale", scale);
  check_zero_point("zero_point", o.is_signed, zero_point);
  const std::vector<int>& s = inputs_[input];
  expect_shape(out, s[0], s[2], s[3], s[1], o.is_signed, "quantize");
  Step st{Kind::kQuantize};
  st.ins = {input};
  st.out = out;
  st.scale = scale;
  st.zero_point = zero_point;
  touch(out);
  steps_.push_back(std::move(st));
}

void Plan::add_conv2d(const PackedConv2dWeights* w, int in, int out, const Conv2dParams& params,
                      const GemmOutput& output) {
  check_tensor(in, "x");
  check_tensor(out, "out");
  if (w == nullptr || w->group_weights.empty()) throw ArgumentError("packed: expected packed conv2d weights");
  const TensorDesc& x = tensors_[in];
  const PackedGemmWeights& g0 = *w->group_weights[0];
  if (x.is_signed != g0.input_signed) {
    throw ArgumentError(std::string("x: the weights were packed for ") + (g0.input_signed ? "int8" : "uint8") +
                        " inputs");
  }
  if (output.type == OutputType::kInt32) throw ArgumentError("out_dtype: a plan keeps int8/uint8 activations");
  if (!g0.has_multiplier) throw ArgumentError("packed: weights packed without a multiplier");
  const Conv2dInput probe{nullptr, x.n, x.h, x.w, x.c, 0, 0, 0};
  int oh = 0, ow = 0;
  conv2d_output_hw(*w, probe, params, output.type, &oh, &ow);
  expect_shape(out, x.n, oh, ow, w->out_channels, output.type == OutputType::kInt8, "conv2d");
  Step& st = push_tensor_step(Kind::kConv2d, {in}, out);
  st.conv = w;
  st.conv_params = params;
  st.gemm_output = output;
}

void Plan::add_depthwise(const PackedDepthwiseWeights* w, int in, int out, const DepthwiseParams& params) {
  check_tensor(in, "x");
  check_tensor(out, "out");
  if (w == nullptr) throw ArgumentError("packed: expected packed depthwise weights");
  const TensorDesc& x = tensors_[in];
  if (x.is_signed != w->input_signed) {
    throw ArgumentError(std::string("x: the weights were packed for ") + (w->input_signed ? "int8" : "uint8") +
                        " inputs");
  }
  if (x.c != w->C_in) {
    throw ArgumentError("x: has C=" + std::to_string(x.c) + " channels but the packed weights expect " +
                        std::to_string(w->C_in));
  }
  const int oh = depthwise_output_size(x.h, w->KH, params.stride_h, params.pad_h, params.dil_h, "H");
  const int ow = depthwise_output_size(x.w, w->KW, params.stride_w, params.pad_w, params.dil_w, "W");
  if (params.out_type == OutputType::kInt32) throw ArgumentError("out_dtype: a plan keeps int8/uint8 activations");
  const bool out_signed = params.out_type == OutputType::kInt8;
  check_clamp("out_min/out_max", out_signed, params.min, params.max);
  check_zero_point("out_zero_point", out_signed, params.zero_point);
  expect_shape(out, x.n, oh, ow, w->C_out, out_signed, "depthwise_conv2d");
  Step& st = push_tensor_step(Kind::kDepthwise, {in}, out);
  st.dw = w;
  st.dw_params = params;
}

void Plan::add_gemm(const PackedGemmWeights* w, int in, int out, const GemmOutput& output) {
  check_tensor(in, "a");
  check_tensor(out, "out");
  if (w == nullptr) throw ArgumentError("packed: expected packed GEMM weights");
  const TensorDesc& a = tensors_[in];
  if (a.h != 1 || a.w != 1) throw ArgumentError("a: a GEMM input is (N, K)");
  if (a.is_signed != w->input_signed) {
    throw ArgumentError(std::string("a: the weights were packed for ") + (w->input_signed ? "int8" : "uint8") +
                        " inputs");
  }
  if (a.c != w->K) {
    throw ArgumentError("a: has K=" + std::to_string(a.c) + " columns but the packed weights expect K=" +
                        std::to_string(w->K));
  }
  if (output.type == OutputType::kInt32) throw ArgumentError("out_dtype: a plan keeps int8/uint8 activations");
  if (!w->has_multiplier) throw ArgumentError("packed: weights packed without a multiplier");
  expect_shape(out, a.n, 1, 1, w->N, output.type == OutputType::kInt8, "gemm");
  Step& st = push_tensor_step(Kind::kGemm, {in}, out);
  st.gemm = w;
  st.gemm_output = output;
}

void Plan::add_elementwise(int kind, int a, const TensorQParams& qa, int b, const TensorQParams& qb, int out,
                           const TensorQParams& qy) {
  check_tensor(a, "a");
  check_tensor(b, "b");
  check_tensor(out, "out");
  if (kind < 0 || kind > 2) throw ArgumentError("kind: expected 0 (add), 1 (fuse_add_relu) or 2 (mul)");
  const TensorDesc &ta = tensors_[a], &tb = tensors_[b];
  if (ta.n != tb.n || ta.h != tb.h || ta.w != tb.w || ta.c != tb.c) throw ArgumentError("b: shape differs from a's");
  if (ta.is_signed != qa.is_signed || tb.is_signed != qb.is_signed) {
    throw ArgumentError("a, b: dtype differs from the tensors'");
  }
  check_scale("a_scale", qa.scale);
  check_scale("b_scale", qb.scale);
  check_scale("out_scale", qy.scale);
  check_zero_point("a_zero_point", qa.is_signed, qa.zero_point);
  check_zero_point("b_zero_point", qb.is_signed, qb.zero_point);
  check_zero_point("out_zero_point", qy.is_signed, qy.zero_point);
  expect_shape(out, ta.n, ta.h, ta.w, ta.c, qy.is_signed, "elementwise");
  Step& st = push_tensor_step(Kind::kElementwise, {a, b}, out);
  st.kind_arg = kind;
  st.qa = qa;
  st.qb = qb;
  st.qy = qy;
}

void Plan::add_pool(int in, int out, const Pool2dParams& params, int32_t zero_point) {
  check_tensor(in, "x");
  check_tensor(out, "out");
  const TensorDesc& x = tensors_[in];
  const int oh = pool_output_size(x.h, params.kh, params.stride_h, params.pad_h, params.dil_h, "H");
  const int ow = pool_output_size(x.w, params.kw, params.stride_w, params.pad_w, params.dil_w, "W");
  if (params.mode != PoolMode::kMax) check_zero_point("zero_point", x.is_signed, zero_point);
  expect_shape(out, x.n, oh, ow, x.c, x.is_signed, "pool2d");
  Step& st = push_tensor_step(Kind::kPool, {in}, out);
  st.pool = params;
  st.zero_point = zero_point;
}

void Plan::add_global_avg_pool(int in, int out) {
  check_tensor(in, "x");
  check_tensor(out, "out");
  const TensorDesc& x = tensors_[in];
  expect_shape(out, x.n, 1, 1, x.c, x.is_signed, "global_avg_pool2d");
  push_tensor_step(Kind::kGlobalAvgPool, {in}, out);
}

void Plan::add_concat(const std::vector<int>& ins, const std::vector<float>& scales,
                      const std::vector<int32_t>& zero_points, int out, float out_scale, int32_t out_zero_point) {
  if (ins.empty()) throw ArgumentError("inputs: expected at least one tensor");
  if (scales.size() != ins.size() || zero_points.size() != ins.size()) {
    throw ArgumentError("scales: expected one scale and zero point per input");
  }
  check_tensor(out, "out");
  int64_t total = 0;
  for (size_t i = 0; i < ins.size(); ++i) {
    check_tensor(ins[i], "inputs");
    const TensorDesc &t = tensors_[ins[i]], &t0 = tensors_[ins[0]];
    if (t.n != t0.n || t.h != t0.h || t.w != t0.w) throw ArgumentError("inputs: differ outside the channel axis");
    check_scale("scales", scales[i]);
    check_zero_point("zero_points", t.is_signed, zero_points[i]);
    total += t.c;
  }
  const TensorDesc& t0 = tensors_[ins[0]];
  const TensorDesc& o = tensors_[out];
  check_scale("out_scale", out_scale);
  check_zero_point("out_zero_point", o.is_signed, out_zero_point);
  if (total != o.c) throw ArgumentError("out: channel count differs from the inputs' sum");
  expect_shape(out, t0.n, t0.h, t0.w, o.c, o.is_signed, "concat");
  Step& st = push_tensor_step(Kind::kConcat, ins, out);
  st.scales = scales;
  st.zero_points = zero_points;
  st.scale = out_scale;
  st.zero_point = out_zero_point;
}

void Plan::add_clamp(int in, int out, int32_t lo, int32_t hi) {
  check_tensor(in, "x");
  check_tensor(out, "out");
  const TensorDesc& x = tensors_[in];
  check_clamp("lo/hi", x.is_signed, lo, hi);
  expect_shape(out, x.n, x.h, x.w, x.c, x.is_signed, "clamp");
  Step& st = push_tensor_step(Kind::kClamp, {in}, out);
  st.lo = lo;
  st.hi = hi;
}

void Plan::add_flatten(int in, int out) {
  check_tensor(in, "x");
  check_tensor(out, "out");
  const TensorDesc& x = tensors_[in];
  expect_shape(out, x.n, 1, 1, x.h * x.w * x.c, x.is_signed, "flatten");
  push_tensor_step(Kind::kFlatten, {in}, out);
}

int Plan::add_dequantize(int in, float scale, int32_t zero_point) {
  check_tensor(in, "q");
  const TensorDesc& q = tensors_[in];
  check_scale("scale", scale);
  check_zero_point("zero_point", q.is_signed, zero_point);
  check_output_size("q", "dequantize", {q.n > 0 ? q.n : 1, q.c, q.h, q.w}, 4);
  const int index = static_cast<int>(outputs_.size());
  Step st{Kind::kDequantize};
  st.ins = {in};
  st.out = index;
  st.scale = scale;
  st.zero_point = zero_point;
  touch(in);
  steps_.push_back(std::move(st));
  outputs_.push_back(OutputSlot{true, in});
  return index;
}

int Plan::add_quantized_output(int t) {
  check_tensor(t, "t");
  outputs_.push_back(OutputSlot{false, t});
  return static_cast<int>(outputs_.size()) - 1;
}

void Plan::finalize() {
  if (finalized_) throw ArgumentError("plan: already finalized");
  const int n_steps = static_cast<int>(steps_.size());
  for (const OutputSlot& o : outputs_) {
    if (!o.is_float) last_use_[o.tensor] = n_steps;  // read by the copy-out after the last step
  }
  const int count = static_cast<int>(tensors_.size());
  for (int t = 0; t < count; ++t) {
    if (first_use_[t] < 0) first_use_[t] = last_use_[t] = n_steps;  // unused: placed, never touched
  }
  // The batch splits only when every tensor and float input has the same N (a step's tensors always do; an
  // unrelated tensor or input of another N would not slice the same way).
  batch_ = count > 0 ? tensors_[0].n : -1;
  for (const TensorDesc& t : tensors_) {
    if (t.n != batch_) batch_ = -1;
  }
  for (const std::vector<int>& s : inputs_) {
    if (!s.empty() && s[0] != batch_) batch_ = -1;
  }
  if (batch_ < 1) batch_ = -1;
  const int whole = batch_ > 0 ? batch_ : 1;
  const Layout& layout = layout_for(whole);
  arena_bytes_ = layout.bytes;
  arenas_.push_back(std::make_unique<AlignedBuffer>());  // sized by the first run: a run by slices needs less
  finalized_ = true;
}

// Greedy placement, largest tensor first: each goes to the lowest aligned offset that does not overlap a placed
// tensor alive at the same time (lifetimes are closed step ranges [first_use, last_use]). The sizes are those of
// `images` images when the batch splits; a layout for k images also holds any k' < k images (each tensor then
// uses a prefix of its slot).
Plan::Layout Plan::place(int images) const {
  const int count = static_cast<int>(tensors_.size());
  std::vector<int64_t> sizes(count);
  for (int t = 0; t < count; ++t) {
    const int64_t bytes = batch_ > 0 ? tensors_[t].bytes() / batch_ * images : tensors_[t].bytes();
    sizes[t] = (bytes + kArenaAlign - 1) / kArenaAlign * kArenaAlign;
  }
  std::vector<int> order(count);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return sizes[a] > sizes[b]; });
  Layout layout;
  layout.offsets.assign(count, 0);
  std::vector<int> placed;
  int64_t arena = 0;
  for (int t : order) {
    std::vector<std::pair<int64_t, int64_t>> busy;  // [begin, end) of overlapping-lifetime tensors
    for (int p : placed) {
      if (first_use_[p] <= last_use_[t] && first_use_[t] <= last_use_[p]) {
        busy.emplace_back(layout.offsets[p], layout.offsets[p] + sizes[p]);
      }
    }
    std::sort(busy.begin(), busy.end());
    int64_t offset = 0;
    for (const auto& b : busy) {
      if (offset + sizes[t] <= b.first) break;
      offset = std::max(offset, b.second);
    }
    layout.offsets[t] = offset;
    arena = std::max(arena, offset + sizes[t]);
    placed.push_back(t);
  }
  layout.bytes = static_cast<size_t>(arena);
  return layout;
}

const Plan::Layout& Plan::layout_for(int images) {
  auto it = layouts_.find(images);
  if (it == layouts_.end()) it = layouts_.emplace(images, place(images)).first;
  return it->second;
}

const char* Plan::step_name(int i) const {
  const Step& st = steps_.at(static_cast<size_t>(i));
  switch (st.kind) {
    case Kind::kCopyIn: return "copy_in";
    case Kind::kQuantize: return "quantize";
    case Kind::kConv2d: return "conv2d";
    case Kind::kDepthwise: return "depthwise";
    case Kind::kGemm: return "gemm";
    case Kind::kElementwise: return st.kind_arg == 2 ? "mul" : (st.kind_arg == 1 ? "fuse_add_relu" : "add");
    case Kind::kPool: return st.pool.mode == PoolMode::kMax ? "max_pool" : "avg_pool";
    case Kind::kGlobalAvgPool: return "global_avg_pool";
    case Kind::kConcat: return "concat";
    case Kind::kClamp: return "clamp";
    case Kind::kFlatten: return "flatten";
    case Kind::kDequantize: return "dequantize";
  }
  return "?";
}

void Plan::run(const std::vector<const void*>& inputs, const std::vector<void*>& outputs,
               std::vector<double>* step_seconds, Split split, int chunk) {
  if (!finalized_) throw ArgumentError("plan: not finalized");
  if (inputs.size() != inputs_.size()) throw ArgumentError("inputs: wrong number of inputs");
  if (outputs.size() != outputs_.size()) throw ArgumentError("outputs: wrong number of outputs");
  if (chunk < 0) throw ArgumentError("chunk: expected 0 (pick) or a number of images >= 1");
  std::lock_guard<std::mutex> lock(run_mutex_);
  if (step_seconds != nullptr || batch_ < 0) {
    AlignedBuffer& arena = *arenas_[0];
    const Layout& layout = layout_for(batch_ > 0 ? batch_ : 1);
    arena.reserve(layout.bytes);
    run_steps(inputs, outputs, 0, batch_ > 0 ? batch_ : 0, arena.as<uint8_t>(), layout, step_seconds);
    return;
  }
  const int N = batch_, threads = get_num_threads();
  if (split == Split::kAuto) split = threads == 1 || N >= threads ? Split::kBatch : Split::kLayer;
  if (split == Split::kLayer) {
    const int c = chunk > 0 ? std::min(chunk, N) : N;
    layout_for(c);
    run_chunks(inputs, outputs, 0, N, c, *arenas_[0]);
    return;
  }
  // kBatch: `workers` slices of `per` whole images, one task each; the rest runs layer-split afterwards. A
  // slice runs `slice_chunk` images at a time: as many as keep the chunk's arena within kChunkArenaBytes.
  const int workers = std::min(threads, N), per = N / workers, rest = N - per * workers;
  int slice_chunk = chunk;
  if (slice_chunk == 0) {
    const size_t image_arena = std::max<size_t>(1, layout_for(1).bytes);
    slice_chunk = static_cast<int>(std::min<size_t>(static_cast<size_t>(per), kChunkArenaBytes / image_arena));
  }
  slice_chunk = std::max(1, std::min(slice_chunk, per));
  layout_for(slice_chunk);  // placed here, not concurrently by the tasks
  if (workers == 1) {  // one slice: no pool job (its kernels may still split their layers)
    run_chunks(inputs, outputs, 0, N, slice_chunk, *arenas_[0]);
    return;
  }
  while (static_cast<int>(arenas_.size()) < workers) arenas_.push_back(std::make_unique<AlignedBuffer>());
  if (rest > 0) layout_for(chunk > 0 ? std::min(chunk, rest) : rest);
  std::mutex error_mutex;
  std::exception_ptr error;
  parallel_for(workers, [&](int i) {
    try {
      run_chunks(inputs, outputs, i * per, per, slice_chunk, *arenas_[i]);
    } catch (...) {  // a pool worker must not throw: hand the first error to the caller
      std::lock_guard<std::mutex> guard(error_mutex);
      if (!error) error = std::current_exception();
    }
  });
  if (error) std::rethrow_exception(error);
  if (rest > 0) {
    run_chunks(inputs, outputs, workers * per, rest, chunk > 0 ? std::min(chunk, rest) : rest, *arenas_[0]);
  }
}

void Plan::run_chunks(const std::vector<const void*>& inputs, const std::vector<void*>& outputs, int n0, int count,
                      int chunk, AlignedBuffer& arena) {
  const Layout& layout = layouts_.at(chunk);
  arena.reserve(layout.bytes);
  for (int c0 = 0; c0 < count; c0 += chunk) {
    run_steps(inputs, outputs, n0 + c0, std::min(chunk, count - c0), arena.as<uint8_t>(), layout, nullptr);
  }
}

// `count` is the number of images of every tensor when the batch splits; otherwise (count = 0 passed, a plan
// whose tensors differ in N) each tensor keeps its own N and n0 is 0.
void Plan::run_steps(const std::vector<const void*>& inputs, const std::vector<void*>& outputs, int n0, int count,
                     uint8_t* arena, const Layout& layout, std::vector<double>* step_seconds) {
  const bool sliced = batch_ > 0;
  auto data = [&](int id) { return arena + layout.offsets[id]; };
  auto images = [&](int id) { return sliced ? count : tensors_[id].n; };
  auto image_bytes = [&](int id) { return int64_t{tensors_[id].h} * tensors_[id].w * tensors_[id].c; };
  if (step_seconds != nullptr) step_seconds->assign(steps_.size(), 0.0);
  using Clock = std::chrono::steady_clock;
  Clock::time_point t0 = Clock::now();
  for (size_t i = 0; i < steps_.size(); ++i) {
    const Step& st = steps_[i];
    if (step_seconds != nullptr && i > 0) {
      const Clock::time_point t1 = Clock::now();
      (*step_seconds)[i - 1] = std::chrono::duration<double>(t1 - t0).count();
      t0 = t1;
    }
    switch (st.kind) {
      case Kind::kCopyIn: {
        const int64_t bytes = images(st.out) * image_bytes(st.out);
        if (bytes > 0) {
          std::memcpy(data(st.out), static_cast<const uint8_t*>(inputs[st.ins[0]]) + n0 * image_bytes(st.out),
                      static_cast<size_t>(bytes));
        }
        break;
      }
      case Kind::kQuantize: {
        const std::vector<int>& s = inputs_[st.ins[0]];
        const int N = sliced ? count : s[0], C = s[1], H = s[2], W = s[3];
        if (N == 0) break;
        const ptrdiff_t image = static_cast<ptrdiff_t>(C) * H * W;
        quantize_nchw_to_nhwc(static_cast<const float*>(inputs[st.ins[0]]) + n0 * image, N, C, H, W, image,
                              static_cast<ptrdiff_t>(H) * W, W, st.scale, st.zero_point,
                              tensors_[st.out].is_signed, data(st.out));
        break;
      }
      case Kind::kConv2d: {
        const TensorDesc& x = tensors_[st.ins[0]];
        const int n = images(st.ins[0]);
        if (n == 0) break;
        const Conv2dInput in{data(st.ins[0]),
                             n,
                             x.h,
                             x.w,
                             x.c,
                             static_cast<ptrdiff_t>(x.h) * x.w * x.c,
                             static_cast<ptrdiff_t>(x.w) * x.c,
                             x.c};
        conv2d(*st.conv, in, st.conv_params, st.gemm_output, data(st.out));
        break;
      }
      case Kind::kDepthwise: {
        const TensorDesc& x = tensors_[st.ins[0]];
        const int n = images(st.ins[0]);
        if (n == 0) break;
        depthwise_conv2d(*st.dw, data(st.ins[0]), n, x.h, x.w, static_cast<ptrdiff_t>(x.h) * x.w * x.c,
                         static_cast<ptrdiff_t>(x.w) * x.c, x.c, st.dw_params, data(st.out));
        break;
      }
      case Kind::kGemm: {
        const TensorDesc& a = tensors_[st.ins[0]];
        const int n = images(st.ins[0]);
        if (n == 0) break;
        gemm(*st.gemm, data(st.ins[0]), n, a.c, st.gemm_output, data(st.out), tensors_[st.out].c);
        break;
      }
      case Kind::kElementwise: {
        const int64_t n = images(st.out) * image_bytes(st.out);
        if (n == 0) break;
        if (st.kind_arg == 2) {
          quantized_mul(data(st.ins[0]), st.qa, data(st.ins[1]), st.qb, data(st.out), st.qy, n, n);
        } else {
          quantized_add(data(st.ins[0]), st.qa, data(st.ins[1]), st.qb, data(st.out), st.qy, n, st.kind_arg == 1,
                        n);
        }
        break;
      }
      case Kind::kPool: {
        const TensorDesc& x = tensors_[st.ins[0]];
        const int n = images(st.ins[0]);
        if (n == 0) break;
        pool2d(data(st.ins[0]), n, x.h, x.w, x.c, static_cast<ptrdiff_t>(x.h) * x.w * x.c,
               static_cast<ptrdiff_t>(x.w) * x.c, x.c, x.is_signed, st.zero_point, st.pool, data(st.out));
        break;
      }
      case Kind::kGlobalAvgPool: {
        const TensorDesc& x = tensors_[st.ins[0]];
        const int n = images(st.ins[0]);
        if (n == 0) break;
        global_avg_pool2d(data(st.ins[0]), n, x.h, x.w, x.c, static_cast<ptrdiff_t>(x.h) * x.w * x.c,
                          static_cast<ptrdiff_t>(x.w) * x.c, x.c, x.is_signed, data(st.out));
        break;
      }
      case Kind::kConcat: {
        const TensorDesc& o = tensors_[st.out];
        const int n = images(st.out);
        if (n == 0) break;
        std::vector<ConcatInput> ins;
        ins.reserve(st.ins.size());
        for (size_t k = 0; k < st.ins.size(); ++k) {
          const TensorDesc& t = tensors_[st.ins[k]];
          ins.push_back(ConcatInput{data(st.ins[k]), t.c, t.c, st.scales[k], st.zero_points[k], t.is_signed});
        }
        concat_channels(ins, int64_t{n} * o.h * o.w, st.scale, st.zero_point, o.is_signed, data(st.out));
        break;
      }
      case Kind::kClamp: {
        const TensorDesc& x = tensors_[st.ins[0]];
        const int64_t bytes = images(st.ins[0]) * image_bytes(st.ins[0]);
        if (x.is_signed) {
          clamp_bytes(reinterpret_cast<const int8_t*>(data(st.ins[0])), reinterpret_cast<int8_t*>(data(st.out)),
                      bytes, static_cast<int8_t>(st.lo), static_cast<int8_t>(st.hi));
        } else {
          clamp_bytes(data(st.ins[0]), data(st.out), bytes, static_cast<uint8_t>(st.lo), static_cast<uint8_t>(st.hi));
        }
        break;
      }
      case Kind::kFlatten: {
        const TensorDesc& x = tensors_[st.ins[0]];
        const uint8_t* src = data(st.ins[0]);
        uint8_t* dst = data(st.out);
        const int64_t hw = int64_t{x.h} * x.w, image = hw * x.c;
        const int n_images = images(st.ins[0]);
        for (int n = 0; n < n_images; ++n) {
          for (int64_t p = 0; p < hw; ++p) {
            for (int c = 0; c < x.c; ++c) dst[n * image + c * hw + p] = src[n * image + p * x.c + c];
          }
        }
        break;
      }
      case Kind::kDequantize: {
        const TensorDesc& q = tensors_[st.ins[0]];
        const int n = images(st.ins[0]);
        if (n == 0) break;
        dequantize_nhwc_to_nchw(data(st.ins[0]), n, q.h, q.w, q.c, static_cast<ptrdiff_t>(q.h) * q.w * q.c,
                                static_cast<ptrdiff_t>(q.w) * q.c, q.c, q.is_signed, st.scale, st.zero_point,
                                static_cast<float*>(outputs[st.out]) + n0 * image_bytes(st.ins[0]));
        break;
      }
    }
  }
  if (step_seconds != nullptr && !steps_.empty()) {
    step_seconds->back() = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  for (size_t j = 0; j < outputs_.size(); ++j) {
    if (outputs_[j].is_float) continue;
    const int t = outputs_[j].tensor;
    const int64_t bytes = images(t) * image_bytes(t);
    if (bytes > 0) {
      std::memcpy(static_cast<uint8_t*>(outputs[j]) + n0 * image_bytes(t), data(t), static_cast<size_t>(bytes));
    }
  }
}

}  // namespace megq
