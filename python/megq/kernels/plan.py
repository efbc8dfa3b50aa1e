"""Prepared execution plans: the kernel calls of one Q-model forward, replayed by one call.

A :class:`Plan` holds activation tensors (NHWC int8/uint8; a 2-D ``(N, C)`` tensor is ``N x 1 x 1 x C``) placed in
one arena allocated once (tensors whose lifetimes do not overlap share bytes), and a list of steps, each one call of
a megq kernel with its packed weights and the arguments the layer-by-layer path passes (contract:
``csrc/megq/plan.h``). ``run(inputs)`` executes every step with the GIL released and returns the outputs, equal bit
for bit to calling the same kernels one by one.

Plans are built by :mod:`megq.module.quantized.plan` from a traced forward; building one by hand::

    plan = megq.kernels.Plan()
    x = plan.add_input(1, 3, 32, 32)                 # float32 NCHW input
    q = plan.add_tensor(1, 32, 32, 3, "int8")
    plan.add_quantize(x, q, scale, zero_point)
    y = plan.add_tensor(1, 32, 32, 16, "int8")
    plan.add_conv2d(packed, q, y, (1, 1), (1, 1), (1, 1), "int8", 0)
    plan.add_dequantize(y, out_scale, 0)
    plan.finalize()
    (out,) = plan.run([x_float])                     # float32 (1, 16, 32, 32)

A batch of N >= T images (T threads) runs as T slices of whole images, each thread taking its slice through every
step with its own arena; smaller batches (and the N % T images left over) split each layer over the threads.
``run(inputs, split="layer" | "batch", chunk=k)`` forces a split or runs a thread's images k at a time; every
choice returns the same bytes (each image's result does not depend on the batch it is in).

Each ``add_*`` checks its geometry (ValueError naming the argument), so a finalized plan cannot read or write
outside its arena; ``run`` checks every input's dtype (float32, TypeError) and shape (ValueError).
"""
from __future__ import annotations

from .. import _C

__all__ = ["Plan"]

#: The extension's plan class (methods ``add_tensor``, ``add_input``, ``add_quantize``, ``add_conv2d``,
#: ``add_depthwise``, ``add_gemm``, ``add_elementwise``, ``add_pool``, ``add_global_avg_pool``, ``add_concat``,
#: ``add_clamp``, ``add_flatten``, ``add_dequantize``, ``add_quantized_output``, ``finalize``, ``run``; properties
#: ``arena_bytes``, ``num_steps``, ``num_tensors``, ``splittable``).
Plan = _C.Plan
