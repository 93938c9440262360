"""Opt-in speed switches of :class:`~dicetalk.pipeline.DiceTalkPipeline`, in one typed place.

A :class:`PerformanceOptions` is given to :meth:`DiceTalkPipeline.set_performance` (or parsed from a
spec string, as the benchmarks take it)::

    pipe.set_performance(PerformanceOptions(attention="flash", cuda_graphs=True))
    pipe.set_performance(PerformanceOptions.parse("fast"))            # every switch that pays on a GPU
    pipe.set_performance(PerformanceOptions.parse("attention=cudnn,compile_blocks"))

None of them changes what is computed (outputs match the default path within float rounding; the
tests check each one alone); each has a CPU fallback (a switch that needs CUDA does nothing there).

``attention``
    the scaled-dot-product-attention backend tried first (``flash``, ``efficient``, ``cudnn``,
    ``math``; ``default``: PyTorch's own choice, the processors as the UNet was built). The UNet's
    self-attention then runs through :class:`SelfAttnProcessor`, which splits batches over the CUDA
    grid's limit (the temporal blocks attend over very many short sequences: one per latent pixel
    and window, 25 frames each).
``fuse_qkv``
    one matrix product for the query, key and value of every self-attention (diffusers'
    ``Attention.fuse_projections``); the cross-attentions keep their processors.
``channels_last``
    the UNet's (and VAE's) convolution weights in NHWC memory order.
``compile_blocks`` / ``compile_vae``
    regional compilation: ``torch.compile`` on each repeated block (the UNet's spatio-temporal
    transformer and ResNet blocks; the VAE decoder's ResNet blocks), not on the whole model.
``cuda_graphs``
    every UNet call of a (batch, frames, size) shape is captured once in a CUDA graph and replayed
    (:class:`GraphedUNet`); on other devices the UNet runs eagerly.
``windows_per_batch``
    sampling windows denoised in one UNet call (a call argument of the same name overrides it).
``decode_batch``
    VAE decoding chunks (of the recipe's ``decode_chunk`` frames) decoded in one call.
``overlap_decode``
    decode each chunk as soon as its frames are final on the last step (on a side CUDA stream, while
    the next windows denoise) instead of after sampling.
"""

from __future__ import annotations

import contextlib
import logging

import torch
import torch.nn.functional as F

from .performance_options import ATTENTION_BACKENDS, FAST, PerformanceOptions  # noqa: F401 - the switches' one definition

logger = logging.getLogger(__name__)

COMPILED_BLOCKS = ("TransformerSpatioTemporalModel", "SpatioTemporalResBlock")
CUDA_GRID_LIMIT = 65535  # the largest grid y/z dimension: flash and efficient attention put the batch there


# ------------------------------------------------------------------------------------ attention
def attention_context(backend: str):
    """A context in which SDPA tries ``backend`` first (the others stay as fallbacks for shapes it
    cannot run, e.g. float32 for flash, or any backend the device lacks)."""
    if backend == "default":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    names = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "cudnn": "CUDNN_ATTENTION", "math": "MATH"}
    order = [getattr(SDPBackend, names[backend])] + [getattr(SDPBackend, n) for k, n in names.items() if k != backend and hasattr(SDPBackend, n)]
    try:
        return sdpa_kernel(order, set_priority=True)
    except TypeError:  # PyTorch < 2.6: no priority order, the backend alone (math as the fallback)
        return sdpa_kernel(order[:1] + [SDPBackend.MATH])


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` on (N, heads, L, d), in pieces of at most the CUDA grid's
    limit along N (flash and efficient attention fail with 'invalid configuration' above it)."""
    n = q.shape[0]
    if q.device.type != "cuda" or n <= CUDA_GRID_LIMIT:
        return F.scaled_dot_product_attention(q, k, v)
    return torch.cat([F.scaled_dot_product_attention(q[s : s + CUDA_GRID_LIMIT], k[s : s + CUDA_GRID_LIMIT], v[s : s + CUDA_GRID_LIMIT]) for s in range(0, n, CUDA_GRID_LIMIT)])


class SelfAttnProcessor:
    """diffusers' ``AttnProcessor2_0`` / ``FusedAttnProcessor2_0`` for the plain self-attention of the
    SVD UNet's transformer blocks (no mask, norms or residual inside), through :func:`sdpa`."""

    @staticmethod
    def serves(attn) -> bool:
        plain = all(getattr(attn, name, None) is None for name in ("spatial_norm", "group_norm", "norm_q", "norm_k"))
        return plain and not attn.is_cross_attention and not attn.residual_connection

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None or hidden_states.ndim != 3:
            raise ValueError("SelfAttnProcessor serves unmasked self-attention on (N, L, C) inputs")
        n, length, _ = hidden_states.shape
        if getattr(attn, "fused_projections", False):
            query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        else:
            query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        heads = attn.heads
        split = lambda t: t.view(n, length, heads, -1).transpose(1, 2)  # noqa: E731
        out = sdpa(split(query), split(key), split(value)).transpose(1, 2).reshape(n, length, -1).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        return out / attn.rescale_output_factor


# ------------------------------------------------------------------------------ applying options
def apply_to_modules(pipe, old: PerformanceOptions, new: PerformanceOptions) -> None:
    """Change the pipeline's modules from ``old`` to ``new`` options (processors, weights' layout,
    compiled blocks); what needs no module change (backend choice, graphs, batching) is read per call."""
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    unet = pipe.unet
    own = (new.attention != "default") or new.fuse_qkv
    if (old.attention != "default") or old.fuse_qkv or own:
        with torch.no_grad():
            for name, attn in ((n, m) for n, m in unet.named_modules() if isinstance(m, Attention)):
                if name.endswith("attn2") or not SelfAttnProcessor.serves(attn):
                    continue
                if new.fuse_qkv and not getattr(attn, "fused_projections", False):
                    attn.fuse_projections(fuse=True)
                elif not new.fuse_qkv and getattr(attn, "fused_projections", False):
                    attn.fused_projections = False
                    for extra in ("to_qkv", "to_kv"):
                        if hasattr(attn, extra):
                            delattr(attn, extra)
                attn.set_processor(SelfAttnProcessor() if own else AttnProcessor2_0())
    if new.channels_last != old.channels_last:
        fmt = torch.channels_last if new.channels_last else torch.contiguous_format
        for module in (unet, pipe.vae):
            for m in module.modules():
                if isinstance(m, torch.nn.Conv2d):
                    m.weight.data = m.weight.data.contiguous(memory_format=fmt)
    if new.compile_blocks != old.compile_blocks or (new.compile_blocks and new.compile_backend != old.compile_backend):
        compile_blocks(unet, new.compile_backend if new.compile_blocks else None)
    if new.compile_vae != old.compile_vae or (new.compile_vae and new.compile_backend != old.compile_backend):
        compile_blocks(pipe.vae.decoder, new.compile_backend if new.compile_vae else None)


def compile_blocks(model: torch.nn.Module, backend: str | None, names: tuple[str, ...] = COMPILED_BLOCKS) -> int:
    """Regional compilation: ``torch.compile`` each submodule whose class is in ``names`` (None:
    back to eager). Returns how many blocks changed."""
    import torch._dynamo

    # One compiled graph per distinct block shape (channels x grid, and batch until it turns dynamic): more than the default limit.
    for option, at_least in (("cache_size_limit", 256), ("recompile_limit", 256), ("accumulated_cache_size_limit", 2048), ("accumulated_recompile_limit", 2048)):
        if hasattr(torch._dynamo.config, option):
            setattr(torch._dynamo.config, option, max(getattr(torch._dynamo.config, option), at_least))
    count = 0
    for module in model.modules():
        if type(module).__name__ in names:
            if backend is None:
                module._compiled_call_impl = None
            else:
                module.compile(backend=backend)  # static shapes first; a second batch size recompiles once with a dynamic batch
            count += 1
    return count


# ---------------------------------------------------------------------------------- CUDA graphs
_UNET_ARGS = ("sample", "timestep", "encoder_hidden_states", "added_time_ids", "audio_tokens", "emotion_tokens", "mask_features", "face_mask")


class GraphedUNet:
    """Calls the UNet through CUDA graphs, one captured per input signature (shapes and dtypes: one
    per (branches x windows, frames) batch of a video size); replays copy the inputs into the graph's
    static buffers. Not on CUDA (or while gradients are on): the UNet, eagerly.

    Every graph draws from one memory pool (they never run concurrently, and each one's output is
    kept alive as long as the graph). A graph is captured again when the UNet's weights move
    (``pipe.to(...)``), since a graph reads them from where they were at capture.
    """

    def __init__(self, unet, warmup: int = 2):
        self.unet = unet
        self.warmup = warmup
        self.graphs: dict = {}
        self.pool = None
        self.captures = 0
        self.replays = 0
        self.eager_calls = 0

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def config(self):
        return self.unet.config

    def reset(self) -> None:
        self.graphs.clear()
        self.pool = None

    def __call__(self, *args, **kwargs):
        from ..models.unet import DiceTalkUNetOutput

        inputs = dict(zip(_UNET_ARGS, args), **kwargs)
        sample = inputs["sample"]
        if sample.device.type != "cuda" or torch.is_grad_enabled():
            self.eager_calls += 1
            return self.unet(**inputs)
        weights = next(self.unet.parameters())
        key = (weights.data_ptr(), weights.dtype) + tuple(
            (name, None) if t is None else (name, tuple(t.shape), t.dtype) for name, t in sorted(inputs.items()) if name in _UNET_ARGS
        )
        entry = self.graphs.get(key)
        if entry is None:
            if self.graphs and next(iter(self.graphs))[0] != weights.data_ptr():
                self.reset()  # the weights moved: every graph reads stale memory
            entry = self.graphs[key] = self._capture(inputs)
        static, graph, output = entry
        for name, t in inputs.items():
            if t is not None:
                static[name].copy_(t)
        graph.replay()
        self.replays += 1
        return DiceTalkUNetOutput(sample=output)

    def _capture(self, inputs: dict):
        static = {name: None if t is None else torch.empty(t.shape, dtype=t.dtype, device=t.device) for name, t in inputs.items()}
        for name, t in inputs.items():
            if t is not None:
                static[name].copy_(t)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the capture (cuBLAS workspaces, compiled blocks)
            for _ in range(self.warmup):
                self.unet(**static, return_dict=False)
        torch.cuda.current_stream().wait_stream(side)
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            output = self.unet(**static, return_dict=False)[0]
        self.captures += 1
        logger.info("captured a CUDA graph of the UNet for %s", {k: tuple(v.shape) for k, v in static.items() if v is not None})
        return static, graph, output
