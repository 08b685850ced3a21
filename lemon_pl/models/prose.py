"""PROSE-style multi-operator transformer (the network used by LeMON).

Data flow::

    u_in (B, n_in, nx), t_in ─► embedder ─► data_encoder ─┐
                                                           ├─► fusion ─► decoder(t_out) ─► (B, n_out, nx)
    tokens (B, L) ─────────────────────────► symbol_encoder┘

With ``no_text=True`` the symbol encoder and fusion are not built and the
decoder cross-attends to the data-encoder output only.

The equation depends on the operator only, and a batch often holds several trajectories of
one operator (an operator-grouped sampler in pretraining, the support and query sets of a task
in meta-learning). With ``share_equation=True`` (the default) the symbol encoder runs once per
distinct token row of the batch and its output is gathered back to the samples: the same values
and, through the gather's backward (a sum over the samples of each operator), the same
gradients as encoding every sample, at a fraction of the work (``tests/models/test_prose.py``
checks both). Inside ``torch.func.vmap`` and ``torch.compile`` (where the number of distinct
rows cannot vary) every row is encoded; there a caller that knows the batch holds one operator
passes its tokens as a single row ``(1, L)``, which is broadcast over the batch (the vmapped
meta-learning step does this for each task).

Equations differ in length (11 to 33 tokens over the 19 families) and a batch is padded to its
longest. With ``pack_tokens=True`` (the default) the per-token maps of the symbol encoder, the
fusion and the decoder's key/value projections of the fused memory run on the real tokens only
(:class:`~lemon_pl.models.layers.TokenPacking`); only the attention sees the padded layout.
A real token's values and every gradient are those of the padded computation (to rounding;
``tests/models/test_token_packing.py``), at about a fifth less work on a mixed batch of 10.
Off under ``torch.func`` transforms and ``torch.compile``. ``share_equation=False,
pack_tokens=False`` is the computation of lemon-pl before issue 14.

Parameter count at the paper size (d_model=512, n_heads=8, dim_ffn=2048,
data/symbol/fusion/decoder layers 2/4/8/8, nx=128, vocab 1098) is
71,104,640 (no_text: 32,710,784), matching the reference 71.1M / 32.7M.
The *per-block* split differs from the reference breakdown only in where the
output head MLP(d->d->nx) (0.33M) lives: the reference counts it in its
"embedder" (0.92M = frame MLP 0.33M + time MLP 0.26M + output MLP 0.33M),
whereas here it is part of ``decoder`` (so embedder 0.59M, decoder 25.81M
vs. reference 25.48M).  Data encoder 6.31M, symbol encoder 13.17M and
fusion 25.22M agree exactly.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .base import OperatorNetwork
from .layers import (
    MLP,
    CrossAttentionLayer,
    TokenPacking,
    TransformerEncoder,
    as_batched_times,
    can_deduplicate,
    can_pack,
    key_padding_to_attn_mask,
    sinusoidal_positions,
)

__all__ = ["Prose", "DataEmbedder", "SymbolEncoder", "Fusion", "OperatorDecoder"]


class DataEmbedder(nn.Module):
    """One token per input frame: MLP(frame) + MLP(time). No positional code."""

    def __init__(self, nx: int, d_model: int) -> None:
        super().__init__()
        self.frame_mlp = MLP(nx, d_model, d_model, activation="gelu")
        self.time_mlp = MLP(1, d_model, d_model, activation="gelu")

    def forward(self, u_in: Tensor, t_in: Tensor) -> Tensor:
        # u_in: (B, n_in, nx); t_in: (B, n_in, 1)
        return self.frame_mlp(u_in) + self.time_mlp(t_in)


class SymbolEncoder(nn.Module):
    """Token embedding + fixed sinusoidal positions + transformer encoder."""

    def __init__(
        self,
        vocab_size: int,
        pad_id: int,
        d_model: int,
        n_heads: int,
        dim_ffn: int,
        n_layers: int,
        dropout: float,
        max_tokens: int,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.token_embed = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        # non-persistent: not part of the state dict, rebuilt on construction
        self.register_buffer("pos_enc", sinusoidal_positions(max_tokens, d_model), persistent=False)
        self.encoder = TransformerEncoder(d_model, n_heads, dim_ffn, n_layers, dropout)

    def positions(self, length: int, like: Tensor) -> Tensor:
        if length <= self.pos_enc.shape[0]:
            return self.pos_enc[:length].to(like.dtype)
        # longer than the pre-computed table: compute on the fly (shape-only branch)
        return sinusoidal_positions(length, self.d_model, device=like.device, dtype=like.dtype)

    def forward(self, tokens: Tensor, token_pad_mask: Tensor, pack: bool = False) -> Tensor:
        """(B, L) -> (B, L, d); ``pack``: the per-token maps run on real tokens only (padding
        positions come out as zeros instead of junk; see :class:`TokenPacking`)."""
        x = self.token_embed(tokens)
        x = x + self.positions(tokens.shape[1], x)
        # A row made only of padding would give an all -inf softmax row (NaN):
        # the mask helper un-masks its first key in that case.
        mask = key_padding_to_attn_mask(token_pad_mask, ensure_one_valid=True)
        if not pack:
            return self.encoder(x, mask)
        packing = TokenPacking(~token_pad_mask.bool())
        return packing.unpack(self.encoder(packing.pack(x), mask, packing))


class Fusion(nn.Module):
    """Joint encoder over [data tokens ; symbol tokens] with type embeddings."""

    def __init__(self, d_model: int, n_heads: int, dim_ffn: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        self.type_embed = nn.Embedding(2, d_model)  # 0 = data, 1 = symbol
        self.encoder = TransformerEncoder(d_model, n_heads, dim_ffn, n_layers, dropout)

    def forward(self, data: Tensor, symbols: Tensor, token_pad_mask: Tensor,
                pack: bool = False) -> tuple[Tensor, Tensor, Optional[TokenPacking]]:
        """Returns the fused tokens (B, n_in + L, d), their SDPA key mask and ``None``; with
        ``pack`` the fused tokens are the (N, d) real ones and the third item their
        :class:`TokenPacking`."""
        b, n_in, _ = data.shape
        x = torch.cat(
            (data + self.type_embed.weight[0].to(data.dtype), symbols + self.type_embed.weight[1].to(symbols.dtype)),
            dim=1,
        )
        data_pad = torch.zeros(b, n_in, dtype=torch.bool, device=data.device)  # data never masked
        key_pad = torch.cat((data_pad, token_pad_mask.bool()), dim=1)
        mask = key_padding_to_attn_mask(key_pad)
        if not pack:
            return self.encoder(x, mask), mask, None
        packing = TokenPacking(~key_pad)
        return self.encoder(packing.pack(x), mask, packing), mask, packing


class OperatorDecoder(nn.Module):
    """Queries built from output times cross-attend to the fused sequence.

    No self-attention among queries: each query time is decoded independently
    given the memory.  The output MLP maps every query to a full snapshot.
    """

    def __init__(self, nx: int, d_model: int, n_heads: int, dim_ffn: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        self.query_time = MLP(1, d_model, d_model, activation="gelu")
        self.query_embed = nn.Parameter(torch.randn(d_model) * 0.02)
        self.layers = nn.ModuleList(CrossAttentionLayer(d_model, n_heads, dim_ffn, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.out_mlp = MLP(d_model, d_model, nx, activation="gelu")

    def forward(self, t_out: Tensor, memory: Tensor, attn_mask: Optional[Tensor] = None,
                memory_packing: Optional[TokenPacking] = None) -> Tensor:
        # t_out: (B, n_out, 1); memory: (B, Lm, d), or its packed real tokens (N, d)
        q = self.query_time(t_out) + self.query_embed
        for layer in self.layers:
            q = layer(q, memory, attn_mask, memory_packing)
        return self.out_mlp(self.norm(q))


class Prose(OperatorNetwork):
    """PROSE multi-operator network.

    forward(u_in, t_in, t_out, tokens=None, token_pad_mask=None) -> (B, n_out, nx)
    """

    uses_equation = True
    decoder_parts = ("decoder",)

    def __init__(
        self,
        nx: int = 128,
        input_len: int = 1,
        output_len: int = 32,
        vocab_size: int = 1098,
        pad_id: int = 2,
        d_model: int = 128,
        n_heads: int = 4,
        dim_ffn: int = 512,
        n_data_layers: int = 2,
        n_symbol_layers: int = 2,
        n_fusion_layers: int = 2,
        n_decoder_layers: int = 2,
        dropout: float = 0.0,
        no_text: bool = False,
        max_tokens: int = 128,
        share_equation: bool = True,
        pack_tokens: bool = True,
    ) -> None:
        super().__init__()
        self.nx = nx
        self.input_len = input_len  # informational: any number of input frames works
        self.output_len = output_len  # informational: any number of query times works
        self.pad_id = pad_id
        self.d_model = d_model
        self.no_text = bool(no_text)
        self.share_equation = bool(share_equation)
        self.pack_tokens = bool(pack_tokens)
        # instance attribute shadows the class default
        self.uses_equation = not self.no_text

        self.embedder = DataEmbedder(nx, d_model)
        self.data_encoder = TransformerEncoder(d_model, n_heads, dim_ffn, n_data_layers, dropout)
        if not self.no_text:
            self.symbol_encoder = SymbolEncoder(
                vocab_size, pad_id, d_model, n_heads, dim_ffn, n_symbol_layers, dropout, max_tokens
            )
            self.fusion = Fusion(d_model, n_heads, dim_ffn, n_fusion_layers, dropout)
        self.decoder = OperatorDecoder(nx, d_model, n_heads, dim_ffn, n_decoder_layers, dropout)

    # ------------------------------------------------------------------ helpers
    def _pad_mask(self, tokens: Tensor, token_pad_mask: Optional[Tensor]) -> Tensor:
        if token_pad_mask is None:
            return tokens == self.pad_id
        if token_pad_mask.shape != tokens.shape:
            raise ValueError(
                f"token_pad_mask shape {tuple(token_pad_mask.shape)} != tokens shape {tuple(tokens.shape)}"
            )
        return token_pad_mask.bool()

    def encode_symbols(self, tokens: Tensor, token_pad_mask: Optional[Tensor] = None) -> Tensor:
        """Encode equation tokens: (B, L) -> (B, L, d_model) (padding positions are junk)."""
        if self.no_text:
            raise RuntimeError("encode_symbols is unavailable: this Prose was built with no_text=True")
        pad = self._pad_mask(tokens, token_pad_mask)
        return self._encode(tokens, pad, self._packs(tokens, pad))

    def _packs(self, tokens: Tensor, pad: Tensor) -> bool:
        """Whether to run the per-token maps on real tokens only (there is padding to skip)."""
        return self.pack_tokens and can_pack() and bool(pad.any())

    def _encode(self, tokens: Tensor, pad: Tensor, pack: bool = False) -> Tensor:
        """The symbol encoder on each distinct (tokens, mask) row once, gathered back to the batch."""
        if not self.share_equation or tokens.shape[0] < 2 or not can_deduplicate(tokens):
            return self.symbol_encoder(tokens, pad, pack)
        key = torch.cat((tokens.long(), pad.long()), dim=1)
        rows, inverse = torch.unique(key, dim=0, return_inverse=True)
        if rows.shape[0] == tokens.shape[0]:
            return self.symbol_encoder(tokens, pad, pack)
        length = tokens.shape[1]
        return self.symbol_encoder(rows[:, :length], rows[:, length:].bool(), pack)[inverse]

    def encode_data(self, u_in: Tensor, t_in: Tensor) -> Tensor:
        """(B, n_in, nx) frames + times -> (B, n_in, d_model) encoded data tokens."""
        if u_in.dim() != 3 or u_in.shape[-1] != self.nx:
            raise ValueError(f"u_in must be (B, n_in, {self.nx}), got {tuple(u_in.shape)}")
        b, n_in, _ = u_in.shape
        t_in = as_batched_times(t_in, b, n_in, u_in)
        return self.data_encoder(self.embedder(u_in, t_in))

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        u_in: Tensor,
        t_in: Tensor,
        t_out: Tensor,
        tokens: Optional[Tensor] = None,
        token_pad_mask: Optional[Tensor] = None,
    ) -> Tensor:
        data = self.encode_data(u_in, t_in)
        b = u_in.shape[0]
        n_out = t_out.shape[-1]
        t_q = as_batched_times(t_out, b, n_out, u_in)
        if self.no_text:
            return self.decoder(t_q, data)  # nothing to mask
        if tokens is None:
            raise ValueError("Prose(no_text=False) needs `tokens`")
        pad = self._pad_mask(tokens, token_pad_mask)
        pack = self._packs(tokens, pad)
        symbols = self._encode(tokens, pad, pack)
        if symbols.shape[0] != b:  # one equation for the whole batch (a task): broadcast it
            if symbols.shape[0] != 1:
                raise ValueError(f"tokens hold {symbols.shape[0]} rows for a batch of {b} (give B rows or 1)")
            symbols, pad = symbols.expand(b, -1, -1), pad.expand(b, -1)
        memory, mask, packing = self.fusion(data, symbols, pad, pack)
        return self.decoder(t_q, memory, mask, packing)
