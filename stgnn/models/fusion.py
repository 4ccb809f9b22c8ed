"""The spatio-temporal fusion family: one configurable model, temporal x spatial x fusion."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from stgnn.models.base import Forecaster, ModelSpec
from stgnn.nn.attention import GraphAttention, TransformerLayer, edge_attention_map
from stgnn.nn.diffusion import DiffusionConv
from stgnn.nn.dropout import Dropout
from stgnn.nn.graph_conv import GraphConv
from stgnn.nn.temporal import GatedTCN

__all__ = ["PRESETS", "Fusion"]

TemporalKind = Literal["lstm", "gru", "tcn", "transformer"]
SpatialKind = Literal["gcn", "diffusion", "graph_attention"]
FusionKind = Literal["concat", "attention", "gate"]
PresetName = Literal["dcrnn", "stgcn", "tgcn", "gcn_lstm", "gwnet", "gman"]

PRESETS: dict[str, tuple[str, str, str]] = {
    "dcrnn": ("gru", "diffusion", "gate"),
    "stgcn": ("tcn", "gcn", "concat"),
    "tgcn": ("gru", "gcn", "concat"),
    "gcn_lstm": ("lstm", "gcn", "concat"),
    "gwnet": ("tcn", "diffusion", "concat"),
    "gman": ("transformer", "graph_attention", "gate"),
}
"""Preset name -> ``(temporal, spatial, fusion)``; see :class:`Fusion` for the closest published models."""


class _TemporalEncoder(nn.Module):
    """``[B, T, N, C] -> [B, N, C]``: a summary of each node's window (shared by all nodes)."""

    def __init__(self, kind: str, channels: int, input_len: int, layers: int, heads: int,
                 kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.kind = kind
        self.rnn: nn.LSTM | nn.GRU | None = None
        self.tcn = nn.ModuleList()
        self.attn = nn.ModuleList()
        if kind in ("lstm", "gru"):
            cls = nn.LSTM if kind == "lstm" else nn.GRU
            self.rnn = cls(channels, channels, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        elif kind == "tcn":
            # dilations 1, k, k^2, ... until the receptive field covers the window
            depth = max(1, math.ceil(math.log(max(input_len, 2), kernel_size)))
            self.tcn = nn.ModuleList(
                GatedTCN(channels, channels, kernel_size, kernel_size**i) for i in range(depth)
            )
            self.receptive_field = kernel_size**depth
        elif kind == "transformer":
            self.position = nn.Parameter(torch.zeros(input_len, 1, channels))
            nn.init.normal_(self.position, std=0.02)
            self.attn = nn.ModuleList(
                TransformerLayer(channels, heads, dropout=dropout, mixer="temporal") for _ in range(layers)
            )
        else:
            raise ValueError(f"temporal must be one of lstm, gru, tcn, transformer; got {kind!r}")
        self.dropout = Dropout(dropout)

    def forward(self, h: Tensor, maps: dict[str, Tensor] | None) -> Tensor:
        b = h.size(0)
        if self.rnn is not None:
            out, _ = self.rnn(rearrange(h, "b t n c -> (b n) t c"))
            return rearrange(out[:, -1], "(b n) c -> b n c", b=b)
        if self.kind == "tcn":
            if h.size(1) < self.receptive_field:  # zero history before the window (causal padding)
                h = F.pad(h, (0, 0, 0, 0, self.receptive_field - h.size(1), 0))
            for layer in self.tcn:
                y = layer(h)
                h = h[:, -y.size(1):] + self.dropout(y)  # residual, cropped to the valid steps
            return h[:, -1]
        if h.size(1) != self.position.size(0):
            raise ValueError(f"temporal='transformer' was built for {self.position.size(0)} input steps, "
                             f"got {h.size(1)}")
        h = h + self.position
        for i, layer in enumerate(self.attn):
            h, amap = layer(h, return_attention=maps is not None)
            if maps is not None and amap is not None:
                maps[f"temporal_{i}"] = amap
        return h[:, -1]


class _SpatialEncoder(nn.Module):
    """``[B, N, C] -> [B, N, C]``: ``layers`` x ``z = LN(z + dropout(ReLU(conv(z))))``."""

    def __init__(self, kind: str, channels: int, layers: int, heads: int, K: int, dropout: float,
                 cached: bool) -> None:
        super().__init__()
        convs: list[nn.Module] = []
        for _ in range(layers):
            if kind == "gcn":
                convs.append(GraphConv(channels, channels, cached=cached))
            elif kind == "diffusion":
                convs.append(DiffusionConv(channels, channels, K, cached=cached))
            elif kind == "graph_attention":
                convs.append(GraphAttention(channels, channels, heads, dropout))
            else:
                raise ValueError(f"spatial must be one of gcn, diffusion, graph_attention; got {kind!r}")
        self.convs = nn.ModuleList(convs)
        self.norms = nn.ModuleList(nn.LayerNorm(channels) for _ in range(layers))
        self.dropout = Dropout(dropout)

    def forward(self, z: Tensor, edge_index: Tensor, edge_weight: Tensor | None,
                maps: dict[str, Tensor] | None) -> Tensor:
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            if isinstance(conv, GraphAttention):
                y, ei, alpha = conv.attend(z, edge_index, edge_weight)
                if maps is not None:
                    maps[f"spatial_{i}"] = edge_attention_map(ei, alpha, z.size(-2))
            else:
                y = conv(z, edge_index, edge_weight)
            z = norm(z + self.dropout(torch.relu(y)))
        return z


class Fusion(Forecaster):
    r"""Spatio-temporal fusion model: a temporal encoder, a spatial encoder and a fusion strategy.

    One class, configured by three values (config keys of ``[model_params]``)::

        h   = Linear(x)                          # [B, T, N, C], shared by all nodes
        z_t = temporal(h)                        # [B, N, C]: each sensor's window summarised
        z_s = spatial(z_t, graph)                # [B, N, C]: the summaries mixed over the graph
        y   = MLP(fuse(z_t, z_s))                # [B, H, N, F_out], all horizons in one pass

    * ``temporal``: ``"lstm"`` / ``"gru"`` (``torch.nn.LSTM`` / ``GRU``, ``temporal_layers``
      layers, last hidden state), ``"tcn"`` (Graph WaveNet's gated dilated causal convolution
      :class:`~stgnn.nn.GatedTCN`, kernel ``kernel_size``, dilations ``1, k, k^2, ...`` until the
      receptive field covers the window, which is left-padded with zeros to it; residual
      connections; last step) or ``"transformer"`` (learned position embedding, then
      ``temporal_layers`` pre-norm self-attention layers, :class:`~stgnn.nn.TransformerLayer`;
      last step).
    * ``spatial``: ``spatial_layers`` x ``z = LayerNorm(z + ReLU(conv(z)))`` with ``conv`` =
      ``"gcn"`` (:class:`~stgnn.nn.GraphConv`, Kipf & Welling), ``"diffusion"``
      (:class:`~stgnn.nn.DiffusionConv`, ``K`` hops both directions) or ``"graph_attention"``
      (:class:`~stgnn.nn.GraphAttention`: multi-head dot-product attention of each node over its
      in-neighbours and itself, ``TransformerConv``-style masked attention computed sparsely,
      ``O(E)``; edge weights select neighbours, their values are not used).
    * ``fusion``: ``"concat"`` (``Linear([z_t, z_s])``), ``"gate"`` (GMAN's gated fusion,
      ``g = sigmoid(W_t z_t + W_s z_s + b)``, ``g z_t + (1 - g) z_s``) or ``"attention"``
      (attention over the two representations: ``a_r = v^T tanh(W z_r + b)``, softmax over
      ``r in {t, s}`` per node, ``sum_r alpha_r z_r``).

    Presets (``preset = "..."``; explicit ``temporal`` / ``spatial`` / ``fusion`` override it) and
    the closest published model -- each is a *simplified relative*, not a reproduction: here the
    spatial step runs once on the temporal summaries, whereas the papers interleave space and time
    in every layer (DCRNN and T-GCN put the graph convolution inside the recurrent cell):

    * ``dcrnn``: gru + diffusion + gate -- DCRNN (Li et al., ICLR 2018): GRU + diffusion conv.
    * ``stgcn``: tcn + gcn + concat -- STGCN (Yu et al., IJCAI 2018): temporal conv + graph conv.
    * ``tgcn``: gru + gcn + concat -- T-GCN (Zhao et al., T-ITS 2020): GRU + GCN.
    * ``gcn_lstm``: lstm + gcn + concat -- GCN-LSTM-style hybrids (graph conv + LSTM).
    * ``gwnet``: tcn + diffusion + concat -- Graph WaveNet (Wu et al., IJCAI 2019) without its
      adaptive adjacency.
    * ``gman``: transformer + graph_attention + gate -- GMAN (Zheng et al., AAAI 2020): temporal
      and spatial attention with gated fusion (GMAN's spatial attention is over all nodes).

    The default (no preset, nothing set) is ``gru + diffusion + gate`` (the ``dcrnn`` preset).

    Parameter counts (207 nodes, 2 input features, 1 output feature, 12 steps in and out, the
    defaults ``hidden_channels=64``, two temporal and two spatial layers): ``dcrnn`` (the default)
    104,652; ``stgcn`` 88,012; ``tgcn`` 71,884; ``gcn_lstm`` 88,524; ``gwnet`` 120,780; ``gman``
    147,660; independent of ``N``.
    There are no per-node parameters: the model is equivariant to node permutations and runs on
    any graph.

    Attention maps: a configuration with an attention component (``temporal="transformer"``,
    ``spatial="graph_attention"`` or ``fusion="attention"``; ``has_attention``) follows the
    attention-map interface; the others have no ``record_attention`` attribute (``hasattr`` is
    false, setting it to ``True`` is an error).  With ``record_attention = True`` every forward
    stores ``attention_maps``:
    ``temporal_i`` ``[T, T]`` (transformer encoder, layer ``i``), ``spatial_i`` ``[N, N]``
    (graph attention, layer ``i``; row = query node, column = attended node), ``fusion`` ``[N, 2]``
    (attention fusion: weight of the temporal and the spatial representation per node), each
    averaged over the batch and the heads.

    Args:
        spec: Dataset-derived sizes.
        preset: One of :data:`PRESETS` (see the table) or ``None``.
        temporal: ``"lstm"``, ``"gru"``, ``"tcn"`` or ``"transformer"``.
        spatial: ``"gcn"``, ``"diffusion"`` or ``"graph_attention"``.
        fusion: ``"concat"``, ``"attention"`` or ``"gate"``.
        hidden_channels: Width ``C`` everywhere. Default ``64``.
        temporal_layers: Recurrent / transformer layers. Default ``2``.
        spatial_layers: Spatial layers. Default ``2``.
        heads: Attention heads (transformer, graph attention). Default ``4``.
        K: Diffusion hops. Default ``2``.
        kernel_size: TCN kernel. Default ``2``.
        dropout: Dropout. Default ``0.0``.
        cached: Reuse graph operators while the graph passed in is unchanged. Default ``True``.

    Shapes:
        ``x [B, T, N, F_in]``, ``edge_index [2, E]``, ``edge_weight [E]`` -> ``[B, H, N, F_out]``.

    Example:
        >>> spec = ModelSpec(num_nodes=4, in_channels=2, out_channels=1, input_len=12, horizon=3)
        >>> model = Fusion(spec, preset="gman", hidden_channels=8, heads=2)
        >>> edge_index = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
        >>> model(torch.randn(2, 12, 4, 2), edge_index).shape
        torch.Size([2, 3, 4, 1])
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        preset: PresetName | None = None,
        temporal: TemporalKind | None = None,
        spatial: SpatialKind | None = None,
        fusion: FusionKind | None = None,
        hidden_channels: int = 64,
        temporal_layers: int = 2,
        spatial_layers: int = 2,
        heads: int = 4,
        K: int = 2,
        kernel_size: int = 2,
        dropout: float = 0.0,
        cached: bool = True,
    ) -> None:
        super().__init__()
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
        base = PRESETS[preset or "dcrnn"]
        self.temporal_kind = temporal or base[0]
        self.spatial_kind = spatial or base[1]
        self.fusion_kind = fusion or base[2]
        if self.fusion_kind not in ("concat", "attention", "gate"):
            raise ValueError(f"fusion must be one of concat, attention, gate; got {self.fusion_kind!r}")
        for name, value in (("temporal_layers", temporal_layers), ("spatial_layers", spatial_layers),
                            ("hidden_channels", hidden_channels), ("heads", heads)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if kernel_size < 2:
            raise ValueError(f"kernel_size must be >= 2, got {kernel_size}")
        self.spec = spec
        self.has_attention = "transformer" == self.temporal_kind or "graph_attention" == self.spatial_kind \
            or "attention" == self.fusion_kind
        self._record_attention = False
        self.attention_maps: dict[str, Tensor] = {}
        c = hidden_channels
        self.input_proj = nn.Linear(spec.in_channels, c)
        self.temporal = _TemporalEncoder(self.temporal_kind, c, spec.input_len, temporal_layers, heads,
                                         kernel_size, dropout)
        self.spatial = _SpatialEncoder(self.spatial_kind, c, spatial_layers, heads, K, dropout, cached)
        if self.fusion_kind == "concat":
            self.fuse = nn.Linear(2 * c, c)
        elif self.fusion_kind == "gate":
            self.gate_t = nn.Linear(c, c, bias=False)
            self.gate_s = nn.Linear(c, c)
        else:
            self.score = nn.Sequential(nn.Linear(c, c), nn.Tanh(), nn.Linear(c, 1, bias=False))
        self.head = nn.Sequential(nn.Linear(c, c), nn.ReLU(), nn.Linear(c, spec.horizon * spec.out_channels))

    @property
    def record_attention(self) -> bool:
        """Store ``attention_maps`` on each forward (only with an attention component)."""
        if not self.has_attention:
            raise AttributeError(f"fusion {self.temporal_kind} + {self.spatial_kind} + {self.fusion_kind} has no "
                                 "attention to record")
        return self._record_attention

    @record_attention.setter
    def record_attention(self, value: bool) -> None:
        if value and not self.has_attention:
            raise ValueError(f"fusion {self.temporal_kind} + {self.spatial_kind} + {self.fusion_kind} has no "
                             "attention to record")
        self._record_attention = bool(value)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """Forecast ``[B, H, N, F_out]`` from ``x [B, T, N, F_in]``."""
        if x.dim() != 4 or x.size(-1) != self.spec.in_channels:
            raise ValueError(f"expected x [B, T, N, {self.spec.in_channels}], got {tuple(x.shape)}")
        maps: dict[str, Tensor] | None = {} if self._record_attention else None
        z_t = self.temporal(self.input_proj(x), maps)
        z_s = self.spatial(z_t, edge_index, edge_weight, maps)
        if self.fusion_kind == "concat":
            z = self.fuse(torch.cat([z_t, z_s], dim=-1))
        elif self.fusion_kind == "gate":
            g = torch.sigmoid(self.gate_t(z_t) + self.gate_s(z_s))
            z = g * z_t + (1.0 - g) * z_s
        else:
            reps = torch.stack([z_t, z_s], dim=-2)  # [B, N, 2, C]
            alpha = torch.softmax(self.score(reps), dim=-2)  # [B, N, 2, 1]
            z = (alpha * reps).sum(-2)
            if maps is not None:
                maps["fusion"] = alpha.detach().squeeze(-1).mean(0)
        if maps is not None:
            self.attention_maps = maps
        out = self.head(z)  # [B, N, H * F_out]
        return rearrange(out, "b n (h f) -> b h n f", f=self.spec.out_channels)
