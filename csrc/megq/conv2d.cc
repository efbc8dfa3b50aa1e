#include "megq/conv2d.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>

#include "megq/dcheck.h"
#include "megq/kernels/conv_kernels.h"
#include "megq/limits.h"
#include "megq/thread_pool.h"

namespace megq {
namespace {

int ceil_div(int a, int b) { return (a + b - 1) / b; }

// An im2col tile of this many bytes stays in L1/L2 while the kernel re-reads
// it for every panel.
constexpr size_t kIm2colTileBytes = 48 * 1024;
constexpr int kMaxTilePixels = 256;

size_t output_bytes(OutputType t) { return t == OutputType::kInt32 ? 4 : 1; }

// The ISA's gatherer that writes patches straight into its GEMM kernel's
// packed A form (kernels/conv_kernels.h), or null: then patches are gathered
// as plain bytes here and the kernel converts them itself.
using PackedIm2col = void (*)(const Im2colArgs&, int, int, uint8_t*);
PackedIm2col packed_im2col(Isa isa) {
#ifdef MEGQ_BUILT_AVX512VNNI
  if (isa == Isa::kAvx512Vnni) return avx512vnni::im2col_packed;
#endif
#ifdef MEGQ_BUILT_AVX2
  if (isa == Isa::kAvx2) return avx2::im2col_packed;
#endif
  (void)isa;
  return nullptr;
}

}  // namespace

int64_t conv_output_size(int in, int kernel, int stride, int pad, int dilation) {
  const int64_t span = static_cast<int64_t>(dilation) * (kernel - 1) + 1;
  const int64_t padded = static_cast<int64_t>(in) + 2 * static_cast<int64_t>(pad);
  if (padded < span) return 0;
  return (padded - span) / stride + 1;
}

void conv2d_output_hw(const PackedConv2dWeights& p, const Conv2dInput& x, const Conv2dParams& c,
                      OutputType out_type, int* oh_out, int* ow_out) {
  if (x.channels != p.in_channels) {
    throw ArgumentError("x: has " + std::to_string(x.channels) + " channels but the weights expect " +
                        std::to_string(p.in_channels));
  }
  if (x.batch < 0 || x.height < 0 || x.width < 0) throw ArgumentError("x: negative dimension");
  if (c.stride_h < 1 || c.stride_w < 1) throw ArgumentError("stride: must be >= 1");
  if (c.dilation_h < 1 || c.dilation_w < 1) throw ArgumentError("dilation: must be >= 1");
  if (c.pad_h < 0 || c.pad_w < 0) throw ArgumentError("padding: must be >= 0");
  const int64_t oh = conv_output_size(x.height, p.kernel_h, c.stride_h, c.pad_h, c.dilation_h);
  const int64_t ow = conv_output_size(x.width, p.kernel_w, c.stride_w, c.pad_w, c.dilation_w);
  if (oh < 1 || ow < 1) {
    throw ArgumentError("x: the kernel (" + std::to_string(p.kernel_h) + "x" + std::to_string(p.kernel_w) +
                        ", with dilation) is larger than the padded " + std::to_string(x.height) + "x" +
                        std::to_string(x.width) + " input");
  }
  // Checked with a batch of at least 1: an empty batch must not make an
  // oversized configuration pass.
  check_output_size("x", "conv2d", {x.batch > 0 ? x.batch : 1, oh, ow, p.out_channels},
                    static_cast<int>(output_bytes(out_type)));
  *oh_out = static_cast<int>(oh);
  *ow_out = static_cast<int>(ow);
}

std::unique_ptr<PackedConv2dWeights> pack_conv2d_weights(const int8_t* w, int out_channels,
                                                         int in_channels_per_group, int kernel_h, int kernel_w,
                                                         int groups, const PackGemmOptions& o, Isa isa) {
  if (out_channels < 1 || in_channels_per_group < 1 || kernel_h < 1 || kernel_w < 1) {
    throw ArgumentError("weight: expected a (Cout, Cin/groups, kh, kw) array with every size >= 1");
  }
  if (static_cast<int64_t>(kernel_h) * kernel_w * in_channels_per_group > std::numeric_limits<int>::max()) {
    throw ArgumentError("weight: Cin/groups * kh * kw is more than 2^31 - 1 (the GEMM's K is an int)");
  }
  if (groups < 1 || out_channels % groups != 0) {
    throw ArgumentError("groups: " + std::to_string(groups) + " must be >= 1 and divide the " +
                        std::to_string(out_channels) + " output channels");
  }
  if (o.multiplier != nullptr && o.multiplier_count != 1 && o.multiplier_count != out_channels) {
    throw ArgumentError("multiplier: expected 1 or Cout=" + std::to_string(out_channels) + " values, got " +
                        std::to_string(o.multiplier_count));
  }
  auto p = std::make_unique<PackedConv2dWeights>();
  p->out_channels = out_channels;
  p->in_channels = in_channels_per_group * groups;
  p->kernel_h = kernel_h;
  p->kernel_w = kernel_w;
  p->groups = groups;
  const int cout_g = out_channels / groups;
  const int k = kernel_h * kernel_w * in_channels_per_group;
  std::vector<int8_t> b(static_cast<size_t>(k) * cout_g);
  for (int g = 0; g < groups; ++g) {
    // B[(ky*kw + kx)*Cg + ci, co] = w[g*cout_g + co, ci, ky, kx]
    for (int co = 0; co < cout_g; ++co) {
      const int8_t* src = w + static_cast<size_t>(g * cout_g + co) * in_channels_per_group * kernel_h * kernel_w;
      for (int ci = 0; ci < in_channels_per_group; ++ci) {
        for (int ky = 0; ky < kernel_h; ++ky) {
          for (int kx = 0; kx < kernel_w; ++kx) {
            const int row = (ky * kernel_w + kx) * in_channels_per_group + ci;
            b[static_cast<size_t>(row) * cout_g + co] = src[(ci * kernel_h + ky) * kernel_w + kx];
          }
        }
      }
    }
    PackGemmOptions og = o;
    if (o.bias) og.bias = o.bias + g * cout_g;
    if (o.multiplier && o.multiplier_count > 1) {
      og.multiplier = o.multiplier + g * cout_g;
      og.multiplier_count = cout_g;
    }
    p->group_weights.push_back(pack_gemm_weights(b.data(), k, cout_g, cout_g, og, isa));
  }
  return p;
}

void conv2d(const PackedConv2dWeights& p, const Conv2dInput& x, const Conv2dParams& c, const GemmOutput& out,
            uint8_t* y) {
  int oh = 0, ow = 0;
  conv2d_output_hw(p, x, c, out.type, &oh, &ow);
  if (x.batch < 1) return;
  MEGQ_DCHECK(x.data != nullptr && y != nullptr);
  MEGQ_DCHECK(static_cast<int>(p.group_weights.size()) == p.groups);
  const PackedGemmWeights& first = *p.group_weights[0];
  if (out.type != OutputType::kInt32 && !first.has_multiplier) {
    throw ArgumentError("packed: these weights were packed without a multiplier; pass one to pack them for "
                        "int8/uint8 output, or ask for int32 output");
  }
  const size_t elem = output_bytes(out.type);
  const ptrdiff_t y_pixel_stride = static_cast<ptrdiff_t>(p.out_channels) * elem;
  const int groups = p.groups, cin_g = p.in_channels / groups, cout_g = p.out_channels / groups;
  const bool pointwise = p.kernel_h == 1 && p.kernel_w == 1 && c.pad_h == 0 && c.pad_w == 0;

  // 1x1 stride 1 over a dense NHWC input: one GEMM over all pixels, no copy.
  if (pointwise && groups == 1 && c.stride_h == 1 && c.stride_w == 1 && x.stride_w == x.channels &&
      x.stride_h == static_cast<ptrdiff_t>(x.width) * x.stride_w &&
      (x.batch == 1 || x.stride_n == static_cast<ptrdiff_t>(x.height) * x.stride_h)) {
    gemm(first, x.data, x.batch * x.height * x.width, x.stride_w, out, y, y_pixel_stride);
    return;
  }

  const int pixels = x.batch * oh * ow;
  const double macs = static_cast<double>(pixels) * p.out_channels * cin_g * p.kernel_h * p.kernel_w;
  const int wanted = wanted_tasks(macs);
  const int mr = first.layout.mr;
  const int panels = first.panels;

  if (pointwise) {
    // 1x1 with stride (downsampling) or grouped: output row by output row,
    // reading the input in place with a row stride of stride_w pixels.
    const int rows = x.batch * oh;
    const int n_blocks = std::min(panels, std::max(1, ceil_div(wanted, rows)));
    const int panels_per_block = ceil_div(panels, n_blocks);
    const size_t scratch_bytes = gemm_scratch_bytes(first);
    parallel_for(rows * n_blocks * groups, [&](int task) {
      thread_local AlignedBuffer scratch;
      scratch.reserve(scratch_bytes);
      const int g = task % groups, nb = (task / groups) % n_blocks, row = task / groups / n_blocks;
      const int n = row / oh, oy = row % oh;
      const uint8_t* a = x.data + n * x.stride_n + static_cast<ptrdiff_t>(oy) * c.stride_h * x.stride_h + g * cin_g;
      uint8_t* dst = y + static_cast<ptrdiff_t>(row) * ow * y_pixel_stride + g * cout_g * elem;
      const int p0 = nb * panels_per_block, p1 = std::min(panels, p0 + panels_per_block);
      if (p0 < p1) {
        gemm_rows(*p.group_weights[g], a, ow, c.stride_w * x.stride_w, out, dst, y_pixel_stride, p0, p1,
                  scratch.as<uint8_t>());
      }
    });
    return;
  }

  // General case: im2col tiles of `tile` output pixels x K bytes.
  const int k = p.kernel_h * p.kernel_w * cin_g;
  int tile = static_cast<int>(kIm2colTileBytes / static_cast<size_t>(k));
  tile = std::clamp(tile / mr * mr, mr, kMaxTilePixels);
  int tiles = ceil_div(pixels, tile);
  if (tiles < wanted) {  // small images: smaller tiles so every thread has work
    tile = std::max(mr, ceil_div(ceil_div(pixels, wanted), mr) * mr);
    tiles = ceil_div(pixels, tile);
  }
  const int n_blocks = std::min(panels, std::max(1, ceil_div(wanted, tiles)));
  const int panels_per_block = ceil_div(panels, n_blocks);
  const size_t scratch_bytes = gemm_scratch_bytes(first);
  const uint8_t pad_byte = static_cast<uint8_t>(first.input_zero_point);
  const bool row_taps_contiguous = groups == 1 && c.dilation_w == 1 && x.stride_w == x.channels;

#ifdef MEGQ_BUILT_AVX512VNNI
  // Stride 1 along x (the 3x3 layers): consecutive output pixels read the
  // same input rows shifted by one pixel, so instead of one gathered row of K
  // bytes per pixel, each output row gets the kernel_h input rows it reads
  // (flipped for the unsigned operand, padded), and the kernel reads every
  // pixel's taps in place from them (a third of the bytes for 3x3).
  if (first.isa == Isa::kAvx512Vnni && groups == 1 && c.stride_w == 1 && c.dilation_w == 1 &&
      x.stride_w == x.channels && cin_g % 4 == 0 && ow >= 2 * mr) {
    const uint8_t flip = first.input_signed ? 0x80 : 0;
    const ptrdiff_t band_row_bytes = static_cast<ptrdiff_t>(ow + p.kernel_w - 1) * cin_g;
    const size_t band_bytes = static_cast<size_t>(band_row_bytes) * p.kernel_h + 64;
    Im2colArgs args{};
    args.x = x.data;
    args.stride_n = x.stride_n, args.stride_h = x.stride_h, args.stride_w = x.stride_w;
    args.height = x.height, args.width = x.width, args.channels = cin_g;
    args.kernel_h = p.kernel_h, args.kernel_w = p.kernel_w;
    args.stride_y = c.stride_h, args.stride_x = 1, args.pad_y = c.pad_h, args.pad_x = c.pad_w;
    args.dilation_y = c.dilation_h, args.dilation_x = 1;
    args.out_h = oh, args.out_w = ow;
    args.pad_value = static_cast<uint8_t>(static_cast<uint8_t>(first.input_zero_point) ^ flip), args.flip = flip;
    args.K = first.K, args.Kp = first.Kp;
    const int rows = x.batch * oh;
    const int n_blocks = std::min(panels, std::max(1, ceil_div(wanted, rows)));
    const int panels_per_block = ceil_div(panels, n_blocks);
    parallel_for(rows * n_blocks, [&](int task) {
      thread_local AlignedBuffer band;
      band.reserve(band_bytes);
      const int nb = task % n_blocks, row = task / n_blocks;
      const int n = row / oh, oy = row % oh;
      uint8_t* b = band.as<uint8_t>();
      avx512vnni::band_rows(args, n, oy, b, band_row_bytes);
      const int p0 = nb * panels_per_block, p1 = std::min(panels, p0 + panels_per_block);
      if (p0 < p1) {
        gemm_rows_segmented(first, b, ow, cin_g, p.kernel_h, band_row_bytes, out,
                            y + static_cast<ptrdiff_t>(row) * ow * y_pixel_stride, y_pixel_stride, p0, p1);
      }
    });
    return;
  }
#endif

  if (const PackedIm2col gather = packed_im2col(first.isa)) {
    // Rows of Kp elements in the kernel's form (conv_kernels.h); 64 bytes of
    // slack for the gatherer's whole-vector stores. The flip turns a signed
    // input into the VNNI kernel's unsigned operand (AInput::kUnsigned).
    const int kp = first.Kp;
    const uint8_t flip = first.input_signed ? 0x80 : 0;
    const size_t packed_bytes =
        static_cast<size_t>(tile) * kp * static_cast<size_t>(first.layout.scratch_bytes_per_k_row) + 64;
    Im2colArgs args{};
    args.x = x.data;
    args.stride_n = x.stride_n, args.stride_h = x.stride_h, args.stride_w = x.stride_w;
    args.height = x.height, args.width = x.width, args.channels = cin_g;
    args.kernel_h = p.kernel_h, args.kernel_w = p.kernel_w;
    args.stride_y = c.stride_h, args.stride_x = c.stride_w, args.pad_y = c.pad_h, args.pad_x = c.pad_w;
    args.dilation_y = c.dilation_h, args.dilation_x = c.dilation_w;
    args.out_h = oh, args.out_w = ow;
    args.pad_value = static_cast<uint8_t>(pad_byte ^ flip), args.flip = flip;
    args.input_signed = first.input_signed, args.zero_point = first.input_zero_point;
    args.K = k, args.Kp = kp;
    parallel_for(tiles * n_blocks * groups, [&](int task) {
      thread_local AlignedBuffer patches;
      patches.reserve(packed_bytes);
      const int g = task % groups, nb = (task / groups) % n_blocks, t = task / groups / n_blocks;
      const int p_begin = t * tile, count = std::min(tile, pixels - p_begin);
      Im2colArgs a = args;
      a.x = x.data + g * cin_g;
      uint8_t* rows = patches.as<uint8_t>();
      // AVX2: the exact 7-bit form when every gathered byte (padding
      // included) is < 128 (it fits in the int16 form's buffer), else the
      // int16 form.
      bool u7 = false;
#ifdef MEGQ_BUILT_AVX2
      if (first.Kp_u7 > 0) u7 = avx2::im2col_u7(a, first.Kp_u7, p_begin, count, rows);
#endif
      if (!u7) gather(a, p_begin, count, rows);
      const int p0 = nb * panels_per_block, p1 = std::min(panels, p0 + panels_per_block);
      if (p0 < p1) {
        gemm_rows_packed(*p.group_weights[g], rows, count, out,
                         y + static_cast<ptrdiff_t>(p_begin) * y_pixel_stride + g * cout_g * elem, y_pixel_stride,
                         p0, p1, u7);
      }
    });
    return;
  }

  const size_t im2col_bytes = static_cast<size_t>(tile) * k;
  parallel_for(tiles * n_blocks * groups, [&](int task) {
    thread_local AlignedBuffer patches, scratch;
    patches.reserve(im2col_bytes);
    scratch.reserve(scratch_bytes);
    const int g = task % groups, nb = (task / groups) % n_blocks, t = task / groups / n_blocks;
    const int p_begin = t * tile, count = std::min(tile, pixels - p_begin);
    uint8_t* rows = patches.as<uint8_t>();
    for (int r = 0; r < count; ++r) {
      const int pix = p_begin + r;
      const int n = pix / (oh * ow), oy = (pix / ow) % oh, ox = pix % ow;
      uint8_t* dst = rows + static_cast<size_t>(r) * k;
      const uint8_t* image = x.data + n * x.stride_n + g * cin_g;
      for (int ky = 0; ky < p.kernel_h; ++ky) {
        const int iy = oy * c.stride_h - c.pad_h + ky * c.dilation_h;
        if (iy < 0 || iy >= x.height) {  // a whole row of taps in the padding
          std::memset(dst, pad_byte, static_cast<size_t>(p.kernel_w) * cin_g);
          dst += static_cast<size_t>(p.kernel_w) * cin_g;
          continue;
        }
        const uint8_t* row = image + iy * x.stride_h;
        const int ix0 = ox * c.stride_w - c.pad_w;
        if (row_taps_contiguous && ix0 >= 0 && ix0 + p.kernel_w <= x.width) {
          // The kw taps are adjacent pixels: one copy instead of kw small ones
          // (the 7x7 stem has 3-byte taps).
          std::memcpy(dst, row + ix0 * x.stride_w, static_cast<size_t>(p.kernel_w) * cin_g);
          dst += static_cast<size_t>(p.kernel_w) * cin_g;
          continue;
        }
        for (int kx = 0; kx < p.kernel_w; ++kx, dst += cin_g) {
          const int ix = ox * c.stride_w - c.pad_w + kx * c.dilation_w;
          if (ix < 0 || ix >= x.width) {
            std::memset(dst, pad_byte, cin_g);
          } else {
            std::memcpy(dst, row + ix * x.stride_w, cin_g);
          }
        }
      }
    }
    const int p0 = nb * panels_per_block, p1 = std::min(panels, p0 + panels_per_block);
    if (p0 < p1) {
      gemm_rows(*p.group_weights[g], rows, count, k, out,
                y + static_cast<ptrdiff_t>(p_begin) * y_pixel_stride + g * cout_g * elem, y_pixel_stride, p0, p1,
                scratch.as<uint8_t>());
    }
  });
}

}  // namespace megq
