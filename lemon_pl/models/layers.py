"""Shared building blocks for the LeMON models.

Every learnable affine map is an ``nn.Linear`` (never a fused/opaque module
such as ``nn.MultiheadAttention``) so that a LoRA wrapper can later replace any
of them by module path.  Nothing here stores tensors on ``self`` during
``forward`` and there is no Python control flow on tensor *values*, so all of
it works under ``torch.func.functional_call`` / ``torch.func.grad`` (MAML).
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "MLP",
    "Attention",
    "FeedForward",
    "EncoderLayer",
    "CrossAttentionLayer",
    "TransformerEncoder",
    "sinusoidal_positions",
    "key_padding_to_attn_mask",
    "as_batched_times",
    "get_activation",
    "differentiable_attention",
    "TokenPacking",
]


@contextlib.contextmanager
def differentiable_attention() -> Iterator[None]:
    """Force the composite ("math") SDPA backend inside this block.

    The fused SDPA kernels (flash / memory-efficient, CPU and CUDA) have no
    double-backward and no vmap batching rule, so *second-order* MAML
    (``torch.func.grad`` of a loss that itself contains a ``grad``, or
    ``autograd.grad(..., create_graph=True)``) and ``torch.func.vmap`` over
    tasks fail or crawl with them.  Run such inner/outer loops under this
    context manager; first-order training needs nothing special::

        with differentiable_attention():
            meta_grads = torch.func.grad(outer_loss)(params)
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]):
        yield


def get_activation(name: str) -> nn.Module:
    name = name.lower()
    if name == "gelu":
        return nn.GELU()
    if name == "tanh":
        return nn.Tanh()
    if name == "relu":
        return nn.ReLU()
    if name in ("silu", "swish"):
        return nn.SiLU()
    raise ValueError(f"unknown activation {name!r}")


class MLP(nn.Module):
    """``in -> hidden -> ... -> hidden -> out`` with ``n_hidden`` hidden layers.

    The activation is applied after every hidden layer but not after the output
    layer.  Layers are kept in an ``nn.Sequential`` named ``net`` so the
    Linear submodules get stable names (``net.0``, ``net.2``, ...).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        n_hidden: int = 1,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        if n_hidden < 1:
            raise ValueError("MLP needs at least one hidden layer")
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim), get_activation(activation)]
        for _ in range(n_hidden - 1):
            layers += [nn.Linear(hidden_dim, hidden_dim), get_activation(activation)]
        layers.append(nn.Linear(hidden_dim, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class TokenPacking:
    """The real (non-padding) tokens of a padded ``(B, L, ...)`` batch as one ``(N, ...)`` block.

    Every per-token map of a transformer layer (LayerNorm, the attention projections, the
    feed-forward network) gives a token's output from that token alone, so running them on the
    N real tokens only gives the real tokens exactly the values, and the parameters exactly the
    gradients, of the padded batch: padding rows are never read by a masked attention and their
    outputs are junk. Only the attention itself needs the ``(B, L)`` layout; :meth:`unpack`
    scatters into it (zeros at padding) and :meth:`pack` gathers back. Both are differentiable
    (an index copy and an index select).

    ``valid``: bool ``(B, L)``, True at a real token.
    """

    def __init__(self, valid: Tensor) -> None:
        self.shape = tuple(valid.shape)
        self.index = valid.reshape(-1).nonzero().squeeze(1)
        self.n = int(self.index.numel())

    @property
    def saves(self) -> bool:
        """Whether there is any padding to skip."""
        return self.n < self.shape[0] * self.shape[1]

    def pack(self, x: Tensor) -> Tensor:
        """(B, L, ...) -> (N, ...)"""
        return x.reshape(self.shape[0] * self.shape[1], *x.shape[2:]).index_select(0, self.index)

    def unpack(self, x: Tensor) -> Tensor:
        """(N, ...) -> (B, L, ...) with zeros at padding."""
        out = x.new_zeros((self.shape[0] * self.shape[1], *x.shape[1:]))
        return out.index_copy(0, self.index, x).unflatten(0, self.shape)


def can_pack() -> bool:
    """False under ``torch.compile`` and inside any ``torch.func`` transform (vmap, grad), where a
    data-dependent number of tokens cannot be used (or, nested, is not worth the risk)."""
    if torch.compiler.is_compiling():
        return False
    level = getattr(torch._C._functorch, "maybe_current_level", None)
    return level is None or level() is None


def can_deduplicate(tokens: Tensor) -> bool:
    """False under ``torch.compile`` and when ``tokens`` is batched by ``torch.func.vmap``:
    ``unique`` has a data-dependent output shape there."""
    if torch.compiler.is_compiling():
        return False
    is_batched = getattr(torch._C._functorch, "is_batchedtensor", None)
    return not (is_batched is not None and is_batched(tokens))


class Attention(nn.Module):
    """Multi-head (self or cross) attention on top of PyTorch's fused SDPA.

    ``attn_mask`` is a boolean tensor broadcastable to ``(B, H, Lq, Lk)`` where
    ``True`` means *attend* (the SDPA convention), typically ``(B, 1, 1, Lk)``
    built by :func:`key_padding_to_attn_mask`.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model = d_model
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.dropout = float(dropout)
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def _heads(self, x: Tensor) -> Tensor:
        # (B, L, D) -> (B, H, L, Dh)
        return x.unflatten(-1, (self.n_heads, self.head_dim)).transpose(1, 2)

    def forward(self, x: Tensor, memory: Optional[Tensor] = None, attn_mask: Optional[Tensor] = None,
                packing: Optional[TokenPacking] = None, memory_packing: Optional[TokenPacking] = None) -> Tensor:
        """``packing``: ``x`` holds the packed real tokens of a self-attention (the output is
        packed too); ``memory_packing``: ``memory`` holds packed real tokens (cross-attention)."""
        kv = x if memory is None else memory
        kv_packing = packing if memory is None else memory_packing
        q, k, v = self.q_proj(x), self.k_proj(kv), self.v_proj(kv)
        if packing is not None:
            q = packing.unpack(q)
        if kv_packing is not None:
            k, v = kv_packing.unpack(k), kv_packing.unpack(v)
        out = F.scaled_dot_product_attention(
            self._heads(q), self._heads(k), self._heads(v), attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
        )
        out = out.transpose(1, 2).flatten(2)  # (B, Lq, D)
        if packing is not None:
            out = packing.pack(out)
        return self.out_proj(out)


class FeedForward(nn.Module):
    def __init__(self, d_model: int, dim_ffn: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, dim_ffn)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(dim_ffn, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.drop(self.act(self.fc1(x))))


class EncoderLayer(nn.Module):
    """Pre-LayerNorm transformer encoder layer: self-attention + FFN."""

    def __init__(self, d_model: int, n_heads: int, dim_ffn: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = Attention(d_model, n_heads, dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, dim_ffn, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, attn_mask: Optional[Tensor] = None, packing: Optional[TokenPacking] = None) -> Tensor:
        x = x + self.drop(self.self_attn(self.norm1(x), attn_mask=attn_mask, packing=packing))
        x = x + self.drop(self.ffn(self.norm2(x)))
        return x


class CrossAttentionLayer(nn.Module):
    """Pre-LayerNorm decoder layer *without* self-attention: cross-attn + FFN.

    The memory is expected to be already normalised (every encoder stack ends
    with a LayerNorm), so only the queries are normalised here.
    """

    def __init__(self, d_model: int, n_heads: int, dim_ffn: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.cross_attn = Attention(d_model, n_heads, dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, dim_ffn, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor, attn_mask: Optional[Tensor] = None,
                memory_packing: Optional[TokenPacking] = None) -> Tensor:
        x = x + self.drop(self.cross_attn(self.norm1(x), memory=memory, attn_mask=attn_mask,
                                          memory_packing=memory_packing))
        x = x + self.drop(self.ffn(self.norm2(x)))
        return x


class TransformerEncoder(nn.Module):
    """A stack of :class:`EncoderLayer` followed by a final LayerNorm."""

    def __init__(self, d_model: int, n_heads: int, dim_ffn: int, n_layers: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(d_model, n_heads, dim_ffn, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, attn_mask: Optional[Tensor] = None, packing: Optional[TokenPacking] = None) -> Tensor:
        """``packing``: ``x`` is the ``(N, d)`` block of packed real tokens (see
        :class:`TokenPacking`; ``attn_mask`` still in the padded layout); the output is packed."""
        for layer in self.layers:
            x = layer(x, attn_mask, packing)
        return self.norm(x)


def sinusoidal_positions(length: int, dim: int, device=None, dtype=torch.float32) -> Tensor:
    """Fixed sinusoidal positional encoding of shape ``(length, dim)``."""
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    half = (dim + 1) // 2
    freq = torch.exp(torch.arange(half, device=device, dtype=torch.float32) * (-math.log(10000.0) * 2.0 / dim))
    ang = pos * freq  # (length, half)
    pe = torch.stack((torch.sin(ang), torch.cos(ang)), dim=-1).flatten(1)[:, :dim]
    return pe.to(dtype)


def key_padding_to_attn_mask(key_pad_mask: Tensor, ensure_one_valid: bool = False) -> Tensor:
    """Turn a ``(B, Lk)`` padding mask (True = padding) into an SDPA mask.

    Returns a boolean ``(B, 1, 1, Lk)`` tensor with True = attend.  With
    ``ensure_one_valid`` a row that is entirely padding gets its first key
    un-masked, so the softmax never sees an all ``-inf`` row (which would give
    NaN).  This is done with tensor ops only (no data-dependent branching).
    """
    valid = ~key_pad_mask.bool()
    if ensure_one_valid:
        first = torch.arange(valid.shape[-1], device=valid.device) == 0  # (Lk,)
        valid = valid | (first & ~valid.any(dim=-1, keepdim=True))
    return valid[:, None, None, :]


def as_batched_times(t: Tensor, batch: int, n: int, like: Tensor) -> Tensor:
    """Broadcast times given as ``(n,)`` or ``(B, n)`` to ``(B, n, 1)``."""
    t = torch.as_tensor(t, device=like.device)
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2 or t.shape[-1] != n:
        raise ValueError(f"expected times of shape ({n},) or (B, {n}), got {tuple(t.shape)}")
    return t.to(like.dtype).expand(batch, n).unsqueeze(-1)


class SpectralConv1d(nn.Module):
    """Channels-last spectral convolution keeping the lowest ``modes`` modes.

    ``weight`` is stored as a real tensor of shape ``(in, out, modes, 2)``
    (real, imaginary) and viewed as complex in ``forward``, so optimisers,
    DDP and ``functional_call`` only ever see real parameters.
    """

    def __init__(self, in_channels: int, out_channels: int, modes: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.modes = modes
        scale = 1.0 / (in_channels * out_channels)
        self.weight = nn.Parameter(scale * torch.rand(in_channels, out_channels, modes, 2))

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, nx, C_in) real -> (B, nx, C_out) real.  Half/bf16 inputs (autocast)
        # are upcast to float32: FFTs don't support bf16 and lose accuracy in fp16.
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        n = x.shape[1]
        m = min(self.modes, n // 2 + 1)
        x_ft = torch.fft.rfft(x, dim=1)[:, :m]  # (B, m, C_in) complex
        w = torch.view_as_complex(self.weight.to(x.dtype))[:, :, :m]  # (C_in, C_out, m)
        out_ft = torch.einsum("bmi,iom->bmo", x_ft, w)
        # irfft zero-pads the spectrum up to n // 2 + 1 frequencies
        return torch.fft.irfft(out_ft, n=n, dim=1)
