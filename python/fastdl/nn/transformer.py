"""The transformer's layers, PyTorch's arguments, parameter names, shapes and initialisation:
MultiheadAttention, PositionalEncoding, TransformerEncoderLayer, TransformerEncoder.

    L target (query) length, S source (key/value) length, N batch, E embed_dim, H num_heads,
    Dh = E / H the head dim. Sequence-first (L, N, E) by default, (N, L, E) with batch_first.

MultiheadAttention computes, per head, softmax(q k^T / sqrt(Dh)) v on the projections
q = query W_q^T + b_q, k = key W_k^T + b_k, v = value W_v^T + b_v, concatenates the heads and
applies out_proj. Two paths:

  * the flash path (the default): ops.attention through one HeadsAttention node; nothing
    L x S is ever built, forward or backward. Taken when need_weights=False, no
    key_padding_mask, and attn_mask is None or the causal mask (is_causal=True, or a 2-D mask
    equal to PyTorch's generate_square_subsequent_mask pattern), and no attention dropout is
    active (eval mode, or dropout=0).
  * the explicit path: scores (N*H, L, S) by batched matmul, masks added, softmax, dropout,
    @ v. The only path that materialises L x S; taken for need_weights=True (the weights are
    returned, averaged over heads by default), for general attn_mask / key_padding_mask, and for
    attention dropout in training. Memory O(N * H * L * S).

A fully masked row gives a zero output row (fastdl's softmax rule), where PyTorch gives NaN.
"""

from __future__ import annotations

import copy
import math
import numbers

import numpy as np

from . import functional as F
from . import init
from ..functions import HeadsAttention
from ..tensor import Tensor, _xp
from .layers import Dropout, Linear, _check_int
from .module import Module, ModuleList, Parameter
from .norm import LayerNorm

__all__ = ["MultiheadAttention", "PositionalEncoding", "TransformerEncoderLayer",
           "TransformerEncoder"]


def _check_p(cls: str, name: str, p) -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{cls}: {name} must be a probability in [0, 1], got {p!r}")
    return float(p)


def _array(x, xp):
    return x.data if isinstance(x, Tensor) else xp.asarray(x)


def _causal_pattern(xp, L: int, S: int):
    """True where query i may not see key j (j > i, top-left aligned as PyTorch's is_causal)."""
    return xp.arange(S)[None, :] > xp.arange(L)[:, None]


def _is_causal_mask(mask, L: int, S: int) -> bool:
    """Is this (L, S) attn_mask exactly the causal one (bool True above the diagonal, or float
    -inf above and 0 on and below)? Then the flash kernel's causal mode computes it."""
    if mask.shape != (L, S):
        return False
    xp = _xp(mask)
    banned = _causal_pattern(xp, L, S)
    if mask.dtype == np.bool_:
        return bool(xp.array_equal(mask, banned))
    return bool(xp.all(xp.where(banned, mask == -np.inf, mask == 0)))


def _additive(mask, dtype, xp):
    """A bool mask (True = not allowed) as -inf / 0, a float mask as is (added to the scores)."""
    if mask.dtype == np.bool_:
        return xp.where(mask, dtype.type(-np.inf), dtype.type(0))
    if mask.dtype.kind != "f":
        raise TypeError(f"MultiheadAttention: masks must be bool or float, got dtype {mask.dtype}")
    return mask.astype(dtype, copy=False)


class MultiheadAttention(Module):
    """MultiheadAttention(embed_dim, num_heads, dropout=0.0, bias=True, kdim=None, vdim=None,
    batch_first=False): PyTorch's layer and parameter names.

    Parameters: in_proj_weight (3E, E) when kdim = vdim = E, else q_proj_weight (E, E),
    k_proj_weight (E, kdim), v_proj_weight (E, vdim); in_proj_bias (3E,) (bias=True); out_proj,
    a Linear(E, E). Initialised as PyTorch: xavier_uniform_ on the input projections, zero
    biases, out_proj.weight as a Linear's. add_bias_kv and add_zero_attn are not supported.
    dropout applies to the attention weights in training (the explicit path, see the module
    docstring).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim=None, vdim=None,
                 batch_first: bool = False, device=None, dtype=None):
        cls = "MultiheadAttention"
        F._only(cls, add_bias_kv=(bool(add_bias_kv), False), add_zero_attn=(bool(add_zero_attn), False))
        self.embed_dim = e = _check_int(cls, "embed_dim", embed_dim, 1)
        self.num_heads = _check_int(cls, "num_heads", num_heads, 1)
        if e % self.num_heads:
            raise ValueError(f"{cls}: embed_dim must be divisible by num_heads, got embed_dim={e}, "
                             f"num_heads={self.num_heads}")
        self.head_dim = e // self.num_heads
        self.kdim = e if kdim is None else _check_int(cls, "kdim", kdim, 1)
        self.vdim = e if vdim is None else _check_int(cls, "vdim", vdim, 1)
        self.dropout = _check_p(cls, "dropout", dropout)
        self.batch_first = bool(batch_first)
        self._qkv_same_embed_dim = self.kdim == e and self.vdim == e
        dtype = np.dtype(np.float32 if dtype is None else dtype)
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(np.empty((3 * e, e), dtype))
        else:
            self.q_proj_weight = Parameter(np.empty((e, e), dtype))
            self.k_proj_weight = Parameter(np.empty((e, self.kdim), dtype))
            self.v_proj_weight = Parameter(np.empty((e, self.vdim), dtype))
        self.in_proj_bias = Parameter(np.empty(3 * e, dtype)) if bias else None
        self.out_proj = Linear(e, e, bias=bias, dtype=dtype)
        self._reset_parameters()
        if device is not None:
            self.to(device)

    def _reset_parameters(self) -> None:
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                init.xavier_uniform_(w)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, "
                f"kdim={self.kdim}, vdim={self.vdim}, batch_first={self.batch_first}")

    # -- projections --
    def _weights(self):
        """(W_q, W_k, W_v) and (b_q, b_k, b_v) as Tensors (views of the packed parameters)."""
        e = self.embed_dim
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            ws = (w[0:e], w[e:2 * e], w[2 * e:])
        else:
            ws = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)
        b = self.in_proj_bias
        bs = (None, None, None) if b is None else (b[0:e], b[e:2 * e], b[2 * e:])
        return ws, bs

    def _project(self, q, k, v, packed: bool):
        """The input projections: one (.., 3E) Tensor when packed (self-attention), else three."""
        if packed:
            return (F.linear(q, self.in_proj_weight, self.in_proj_bias),)
        ws, bs = self._weights()
        return tuple(F.linear(x, w, b) for x, w, b in zip((q, k, v), ws, bs))

    # -- forward --
    def forward(self, query, key, value, need_weights: bool = False, attn_mask=None,
                is_causal: bool = False, key_padding_mask=None, average_attn_weights: bool = True):
        """(output, weights or None). query (L, N, E), key (S, N, kdim), value (S, N, vdim)
        ((N, L, E) ... with batch_first; 2-D (L, E) ... unbatched); output like query.

        need_weights=False (the default, unlike PyTorch's True) runs the flash kernel and never
        builds an L x S matrix. need_weights=True is the only path that does: it returns the
        attention weights (N, L, S), averaged over the heads (average_attn_weights=True, as
        PyTorch) or (N, H, L, S). attn_mask (L, S) or (N*H, L, S) and key_padding_mask (N, S):
        bool (True = not allowed) or float (added to the scores), as PyTorch; any mask other
        than the causal one takes the explicit L x S path. is_causal=True alone means causal
        attention (query i sees keys j <= i); with an attn_mask it is only a hint, as in
        PyTorch, and the mask decides. Note the argument order is DESIGN.md's, not PyTorch's
        (whose 4th is key_padding_mask): pass the masks by keyword.
        """
        cls = "MultiheadAttention"
        if isinstance(need_weights, (Tensor, np.ndarray)) or not isinstance(
                need_weights, (bool, np.bool_, int, np.integer)):
            raise TypeError(f"{cls}: need_weights must be a bool, got {type(need_weights).__name__} "
                            f"(the 4th argument is need_weights here, not PyTorch's key_padding_mask: "
                            f"pass masks by keyword)")
        same = query is key and key is value
        q = F._t(query, "query")
        k, v = (q, q) if same else (F._t(key, "key"), F._t(value, "value"))
        unbatched = self._check_inputs(q, k, v)
        if unbatched:  # (L, E) -> (L, 1, E): sequence-first with N = 1
            q = q.reshape(q.shape[0], 1, q.shape[1])
            k, v = (q, q) if same else (k.reshape(k.shape[0], 1, k.shape[1]),
                                        v.reshape(v.shape[0], 1, v.shape[1]))
        bf = self.batch_first and not unbatched
        n, L = (q.shape[0], q.shape[1]) if bf else (q.shape[1], q.shape[0])
        S = k.shape[1] if bf else k.shape[0]
        xp = _xp(q.data)
        attn_mask = None if attn_mask is None else _array(attn_mask, xp)
        key_padding_mask = None if key_padding_mask is None else _array(key_padding_mask, xp)
        if attn_mask is not None:
            self._check_mask("attn_mask", attn_mask, ((L, S), (n * self.num_heads, L, S)))
        if key_padding_mask is not None:
            if unbatched and key_padding_mask.ndim == 1:
                key_padding_mask = key_padding_mask[None]
            self._check_mask("key_padding_mask", key_padding_mask, ((n, S),))
        causal = bool(is_causal) and attn_mask is None
        if attn_mask is not None and _is_causal_mask(attn_mask, L, S):
            causal, attn_mask = True, None
        dropout = self.dropout if self.training else 0.0
        if (need_weights or attn_mask is not None or key_padding_mask is not None
                or dropout > 0.0):
            out, weights = self._explicit(q, k, v, bf, n, L, S, attn_mask, key_padding_mask,
                                          causal, dropout, need_weights, average_attn_weights)
        else:
            packed = same and self._qkv_same_embed_dim
            proj = self._project(q, k, v, packed)
            out = HeadsAttention.apply(*proj, num_heads=self.num_heads, batch_first=bf,
                                       causal=causal)
            weights = None
        out = self.out_proj(out)
        if unbatched:
            out = out.reshape(L, self.embed_dim)
            if weights is not None:
                weights = weights.reshape(weights.shape[1:])
        return out, weights

    def _check_inputs(self, q, k, v) -> bool:
        """ValueError naming the argument for a wrong rank or size; returns unbatched."""
        cls, e = "MultiheadAttention", self.embed_dim
        layout = "(N, L, E)" if self.batch_first else "(L, N, E)"
        if q.ndim not in (2, 3):
            raise ValueError(f"{cls}: query must be 3-D {layout} or 2-D (L, E) unbatched, got "
                             f"shape {q.shape}")
        for name, t, d in (("query", q, e), ("key", k, self.kdim), ("value", v, self.vdim)):
            if t.ndim != q.ndim:
                raise ValueError(f"{cls}: {name} must be {q.ndim}-D like query (shape {q.shape}), "
                                 f"got shape {t.shape}")
            if t.shape[-1] != d:
                what = "embed_dim" if name == "query" else ("kdim" if name == "key" else "vdim")
                raise ValueError(f"{cls}: {name} must have {d} features ({what}={d}) in its last "
                                 f"axis, got shape {t.shape}")
        if k.shape[:-1] != v.shape[:-1]:
            raise ValueError(f"{cls}: key and value must agree in all but the last axis, got "
                             f"key {k.shape} and value {v.shape}")
        if q.ndim == 3:
            ax = 0 if self.batch_first else 1
            if k.shape[ax] != q.shape[ax]:
                raise ValueError(f"{cls}: key has batch size {k.shape[ax]} (shape {k.shape}), "
                                 f"query {q.shape[ax]} (shape {q.shape})")
        s_ax = 1 if (self.batch_first and q.ndim == 3) else 0
        if k.shape[s_ax] == 0:
            raise ValueError(f"{cls}: attention over zero keys is undefined (key shape {k.shape})")
        return q.ndim == 2

    @staticmethod
    def _check_mask(name, mask, shapes) -> None:
        if mask.dtype != np.bool_ and mask.dtype.kind != "f":
            raise TypeError(f"MultiheadAttention: {name} must be bool or float, got dtype {mask.dtype}")
        if tuple(mask.shape) not in shapes:
            want = " or ".join(str(s) for s in shapes)
            raise ValueError(f"MultiheadAttention: {name} must have shape {want}, got "
                             f"{tuple(mask.shape)}")

    def _explicit(self, q, k, v, bf, n, L, S, attn_mask, key_padding_mask, causal, dropout,
                  need_weights, average):
        """Scores, masks, softmax, dropout, @ v with (N*H, L, S) matrices (materialised)."""
        h, dh = self.num_heads, self.head_dim
        qp, kp, vp = self._project(q, k, v, packed=False)

        def heads(t, length):  # (length, N, E) or (N, length, E) -> (N*H, length, Dh)
            if bf:
                return t.reshape(n, length, h, dh).transpose(0, 2, 1, 3).reshape(n * h, length, dh)
            return t.reshape(length, n * h, dh).transpose(1, 0, 2)

        scores = (heads(qp, L) * (1.0 / math.sqrt(dh))) @ heads(kp, S).transpose(0, 2, 1)
        scores = scores.reshape(n, h, L, S)
        xp, dtype = _xp(scores.data), scores.dtype
        bias = None
        if causal:
            bias = _additive(_causal_pattern(xp, L, S), dtype, xp)
        if attn_mask is not None:
            m = _additive(attn_mask, dtype, xp)
            m = m.reshape(n, h, L, S) if m.ndim == 3 else m
            bias = m if bias is None else bias + m
        if key_padding_mask is not None:
            m = _additive(key_padding_mask, dtype, xp).reshape(n, 1, 1, S)
            bias = m if bias is None else bias + m
        if bias is not None:
            scores = scores + bias
        attn = scores.softmax(-1)
        if dropout > 0.0:
            attn = F.dropout(attn, dropout, True)
        o = attn.reshape(n * h, L, S) @ heads(vp, S)  # (N*H, L, Dh)
        if bf:
            o = o.reshape(n, h, L, dh).transpose(0, 2, 1, 3).reshape(n, L, h * dh)
        else:
            o = o.transpose(1, 0, 2).reshape(L, n, h * dh)
        weights = None
        if need_weights:
            weights = attn.mean(axis=1) if average else attn
        return o, weights


def sinusoidal_table(max_len: int, d_model: int) -> np.ndarray:
    """float64 (max_len, d_model): sin(p / 10000^(2i/d)) at feature 2i, cos at 2i + 1."""
    pos = np.arange(max_len, dtype=np.float64)[:, None]
    freq = np.exp(np.arange(0, d_model, 2, dtype=np.float64) * (-math.log(10000.0) / d_model))
    pe = np.empty((max_len, d_model), np.float64)
    pe[:, 0::2] = np.sin(pos * freq)
    pe[:, 1::2] = np.cos(pos * freq)
    return pe


class PositionalEncoding(Module):
    """Adds the sinusoidal position encoding of "Attention Is All You Need" (sin on even, cos
    on odd features) to a (S, N, d_model) input, or (N, S, d_model) with batch_first=True, then
    applies dropout (training only).

    The table (max_len, d_model) is a non-persistent buffer ``pe`` (moved by ``to()``, not in
    the state dict), computed in float64 and cast to the input's dtype. d_model must be even
    and S <= max_len (ValueError otherwise).
    """

    def __init__(self, d_model: int, max_len: int = 5000, dropout: float = 0.0,
                 batch_first: bool = False):
        cls = "PositionalEncoding"
        self.d_model = _check_int(cls, "d_model", d_model, 2)
        if self.d_model % 2:
            raise ValueError(f"{cls}: d_model must be even (sin/cos pairs), got {d_model}")
        self.max_len = _check_int(cls, "max_len", max_len, 1)
        self.batch_first = bool(batch_first)
        self.dropout = Dropout(_check_p(cls, "dropout", dropout))
        self.register_buffer("pe", sinusoidal_table(self.max_len, self.d_model), persistent=False)

    def forward(self, x):
        x = F._t(x)
        layout = "(N, S, d_model)" if self.batch_first else "(S, N, d_model)"
        if x.ndim != 3 or x.shape[2] != self.d_model:
            raise ValueError(f"PositionalEncoding: input must be {layout} with d_model="
                             f"{self.d_model}, got shape {x.shape}")
        s = x.shape[1] if self.batch_first else x.shape[0]
        if s > self.max_len:
            raise ValueError(f"PositionalEncoding: sequence length {s} (input shape {x.shape}) "
                             f"exceeds max_len={self.max_len}")
        pe = self.pe[:s]
        if pe.dtype != x.dtype:
            pe = pe.astype(x.dtype)
        if _xp(pe) is not _xp(x.data):
            pe = Tensor(pe).to(x.device).data
        return self.dropout(x + (pe[None] if self.batch_first else pe[:, None]))

    def extra_repr(self):
        return f"d_model={self.d_model}, max_len={self.max_len}, batch_first={self.batch_first}"


_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


class TransformerEncoderLayer(Module):
    """Self-attention and a feed-forward block, each with a residual connection and LayerNorm
    (post-norm by default, pre-norm with norm_first=True), PyTorch's arguments and submodule
    names (self_attn, linear1, dropout, linear2, norm1, norm2, dropout1, dropout2), so a
    PyTorch state dict loads.

        norm_first=False:  x = norm1(x + sa(x));        x = norm2(x + ff(x))
        norm_first=True:   x = x + sa(norm1(x));        x = x + ff(norm2(x))
        sa(x) = dropout1(self_attn(x, x, x)[0]),  ff(x) = dropout2(linear2(dropout(act(linear1(x)))))

    activation: "relu", "gelu" (exact erf form) or a callable on Tensors. self_attn takes the
    flash path unless a general mask is given or attention dropout is active in training (with
    the default dropout=0.1, training uses the explicit path; dropout=0.0 keeps it flash).
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation="relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, device=None, dtype=None):
        cls = "TransformerEncoderLayer"
        dim_feedforward = _check_int(cls, "dim_feedforward", dim_feedforward, 1)
        dropout = _check_p(cls, "dropout", dropout)
        if isinstance(activation, str):
            if activation not in _ACTIVATIONS:
                raise ValueError(f"{cls}: activation must be 'relu', 'gelu' or a callable, got "
                                 f"{activation!r}")
            self.activation_name = activation
            activation = _ACTIVATIONS[activation]
        elif not callable(activation):
            raise TypeError(f"{cls}: activation must be 'relu', 'gelu' or a callable, got "
                            f"{type(activation).__name__}")
        else:
            self.activation_name = getattr(activation, "__name__", type(activation).__name__)
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                            batch_first=batch_first, dtype=dtype)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        self.norm_first = bool(norm_first)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = activation
        self.batch_first = bool(batch_first)
        if device is not None:
            self.to(device)

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal: bool = False):
        """src (S, N, d_model), or (N, S, d_model) with batch_first; masks as MultiheadAttention's
        attn_mask (S, S) / (N*nhead, S, S) and key_padding_mask (N, S)."""
        x = F._t(src, "src")
        if x.ndim not in (2, 3) or x.shape[-1] != self.self_attn.embed_dim:
            raise ValueError(f"TransformerEncoderLayer: src must be (S, N, d_model) (or (N, S, "
                             f"d_model) with batch_first) with d_model={self.self_attn.embed_dim}, "
                             f"got shape {x.shape}")
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        y = self.self_attn(x, x, x, need_weights=False, attn_mask=attn_mask, is_causal=is_causal,
                           key_padding_mask=key_padding_mask)[0]
        return self.dropout1(y)

    def _ff_block(self, x):
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def extra_repr(self):
        return f"activation={self.activation_name}, norm_first={self.norm_first}"


class TransformerEncoder(Module):
    """num_layers deep copies of encoder_layer (layers.0, layers.1, ...), then norm if given:
    PyTorch's TransformerEncoder(encoder_layer, num_layers, norm=None) and state dict names."""

    def __init__(self, encoder_layer: TransformerEncoderLayer, num_layers: int, norm=None):
        if not isinstance(encoder_layer, Module):
            raise TypeError(f"TransformerEncoder: encoder_layer must be a Module, got "
                            f"{type(encoder_layer).__name__}")
        self.num_layers = _check_int("TransformerEncoder", "num_layers", num_layers, 1)
        self.layers = ModuleList(copy.deepcopy(encoder_layer) for _ in range(self.num_layers))
        self.norm = norm

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal: bool = False):
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask,
                      is_causal=is_causal)
        return x if self.norm is None else self.norm(x)
