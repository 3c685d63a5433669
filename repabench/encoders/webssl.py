"""Web-SSL DINO encoders (Fan et al. 2025) via transformers' `Dinov2Model` (docs/upstream-facts.md §4.2).

Weights are a Hugging Face snapshot directory (config.json + safetensors) fetched as `hfrepo:`; random init uses
the architecture below (hidden size from the HF configs; depth and heads from the Web-SSL paper, which the
parameter counts confirm). Tokens: `last_hidden_state` (post-LN) without the CLS token.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from repabench.encoders.base import Encoder
from repabench.encoders.preprocessing import Preprocessing
from repabench.weights import WeightError, verified_path

# hidden, layers, heads (MLP ratio 4, plain GELU MLP, patch 14, 224 px)
WEBSSL_ARCH = {
    "dino300m": (1024, 24, 16),
    "dino1b": (1536, 40, 24),
    "dino2b": (2688, 24, 21),
    "dino3b": (3072, 26, 24),
    "dino5b": (3584, 32, 28),
    "dino7b": (4096, 32, 32),
}


class WebSSLEncoder(Encoder):
    def __init__(self, name: str, embed_dim: int, size: str, preprocessing: Preprocessing,
                 snapshot: Path | None):
        super().__init__(name, embed_dim, pretrained=snapshot is not None)
        from transformers import Dinov2Config, Dinov2Model

        self.preprocessing = preprocessing
        if snapshot is not None:
            snapshot = verified_path(snapshot)
            if not (snapshot / "config.json").is_file():
                raise WeightError(f"{snapshot} is not a Hugging Face snapshot (no config.json); delete it and "
                                  "rerun fetch_weights")
            self.network = Dinov2Model.from_pretrained(str(snapshot), local_files_only=True)
        else:
            hidden, layers, heads = WEBSSL_ARCH[size]
            config = Dinov2Config(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                  mlp_ratio=4, patch_size=14, image_size=224, layer_norm_eps=1e-6,
                                  use_swiglu_ffn=False)
            self.network = Dinov2Model(config)
        if self.network.config.hidden_size != embed_dim:
            raise WeightError(f"{name}: snapshot has hidden size {self.network.config.hidden_size}, the registry "
                              f"says {embed_dim}")

    def tokens(self, x: Tensor, grid: int) -> Tensor:
        return self.network(pixel_values=x).last_hidden_state[:, 1:]
