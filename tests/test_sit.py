"""SiT family: parameter counts against docs/upstream-facts.md §1.1, init rules, projectors, checkpoint loading."""

import math

import numpy as np
import pytest
import torch

from repabench.sit import (MODEL_CONFIGS, ConvProjector, ProjectorConfig, build_sit, load_generator, model_name,
                           model_slug, sincos_pos_embed_2d, timestep_embedding)

# docs/upstream-facts.md §1.1: all model.parameters() at 256 px (latent 32), 1000 classes + null, no projector
UPSTREAM_COUNTS = {"SiT-S/2": 32_957_200, "SiT-B/2": 130_500_112, "SiT-L/2": 458_086_416, "SiT-XL/2": 675_111_184}


def hand_count(depth, d, patch, tokens, classes=1000, channels=4):
    """The spec's layer-shape formula, independent of the module code."""
    return (channels * patch * patch * d + d  # patch embedding
            + tokens * d  # frozen pos_embed
            + 256 * d + d + d * d + d  # timestep MLP
            + (classes + 1) * d  # label table incl. null
            + depth * (18 * d * d + 15 * d)
            + d * patch * patch * channels + patch * patch * channels + d * 2 * d + 2 * d)  # final layer


@pytest.mark.parametrize("name", list(UPSTREAM_COUNTS))
def test_parameter_counts_match_upstream_table(name):
    with torch.device("meta"):
        model = build_sit(name, input_size=32)
    assert sum(p.numel() for p in model.parameters()) == UPSTREAM_COUNTS[name]


@pytest.mark.parametrize("name", [n for n in MODEL_CONFIGS if n.endswith(("/4", "/8"))])
def test_patch_variants_match_the_layer_formula(name):
    cfg = MODEL_CONFIGS[name]
    with torch.device("meta"):
        model = build_sit(name, input_size=32)
    tokens = (32 // cfg["patch_size"]) ** 2
    assert sum(p.numel() for p in model.parameters()) == hand_count(cfg["depth"], cfg["hidden_size"],
                                                                     cfg["patch_size"], tokens)


def test_projector_param_counts_match_spec():
    with torch.device("meta"):
        projectors = [ProjectorConfig("mlp", 768), ProjectorConfig("conv", 768, kernel=3)]
        model = build_sit("SiT-B/2", 32, projectors=projectors)
    mlp, conv = (sum(p.numel() for p in proj.parameters()) for proj in model.projectors)
    assert round(mlp / 1e6, 2) == 7.34 and round(conv / 1e6, 2) == 5.31


def test_small_model_runs_and_decoder_width_equals_hidden():
    model = build_sit("SiT-S/2", input_size=8, num_classes=10)  # upstream S/2 crashes at this forward
    out = model(torch.randn(2, 4, 8, 8), torch.rand(2), torch.tensor([0, 9]))
    assert out.shape == (2, 4, 8, 8)
    assert model.final_layer.linear.in_features == 384
    # adaLN-Zero + zero final layer: the untrained model outputs exactly zero
    assert torch.count_nonzero(out) == 0


def test_init_rules():
    torch.manual_seed(0)
    model = build_sit("SiT-B/2", 32, projectors=[ProjectorConfig("mlp", 64), ProjectorConfig("conv", 64)])
    qkv = model.blocks[0].attn.qkv.weight
    bound = math.sqrt(6 / (qkv.shape[0] + qkv.shape[1]))  # xavier-uniform
    assert qkv.abs().max() <= bound and qkv.abs().max() > 0.9 * bound
    assert torch.all(model.blocks[0].attn.qkv.bias == 0)
    assert abs(model.y_embedder.embedding_table.weight.std().item() - 0.02) < 1e-3
    assert abs(model.t_embedder.mlp[0].weight.std().item() - 0.02) < 2e-3
    assert torch.all(model.blocks[3].adaLN_modulation[-1].weight == 0)
    assert torch.all(model.final_layer.linear.weight == 0)
    mlp_first = model.projectors[0][0].weight
    assert mlp_first.abs().max() <= math.sqrt(6 / sum(mlp_first.shape))  # xavier too
    conv = model.projectors[1].conv.weight  # PyTorch default (kaiming-uniform a=sqrt(5)): bound 1/sqrt(fan_in)
    fan_in = conv.shape[1] * 9
    assert conv.abs().max() <= 1 / math.sqrt(fan_in) and conv.abs().max() > 0.9 / math.sqrt(fan_in)
    assert not model.pos_embed.requires_grad


def test_pos_embed_and_timestep_embedding_against_formula():
    dim, grid = 8, 3
    emb = sincos_pos_embed_2d(dim, grid)
    row, col = 2, 1
    omega = 1.0 / 10000 ** (np.arange(2) / 2)
    expected = np.concatenate([np.sin(col * omega), np.cos(col * omega), np.sin(row * omega), np.cos(row * omega)])
    np.testing.assert_allclose(emb[row * grid + col], expected, rtol=1e-6)
    t = torch.tensor([0.0, 0.3, 1.0])
    emb_t = timestep_embedding(t, 256)
    freqs = np.exp(-math.log(10000) * np.arange(128) / 128)
    np.testing.assert_allclose(emb_t[1, :128].numpy(), np.cos(0.3 * freqs), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(emb_t[1, 128:].numpy(), np.sin(0.3 * freqs), rtol=1e-5, atol=1e-6)


def test_conv_projector_is_local_to_3x3_neighbourhood():
    torch.manual_seed(0)
    grid, dim = 6, 5
    proj = ConvProjector(dim, 4, kernel=3)
    tokens = torch.randn(1, grid * grid, dim, requires_grad=True)
    row, col = 2, 4
    proj(tokens)[0, row * grid + col].sum().backward()
    influence = tokens.grad[0].abs().sum(-1).reshape(grid, grid)
    for r in range(grid):
        for c in range(grid):
            assert (influence[r, c] > 0) == (abs(r - row) <= 1 and abs(c - col) <= 1), (r, c)


def test_conv_kernel_1_is_per_token_linear():
    proj = ConvProjector(5, 3, kernel=1)
    x = torch.randn(2, 16, 5)
    expected = x @ proj.conv.weight[:, :, 0, 0].T + proj.conv.bias
    torch.testing.assert_close(proj(x), expected)


def test_projectors_attach_after_encoder_depth_block():
    torch.manual_seed(0)
    model = build_sit("SiT-T/2", 8, num_classes=3, projectors=[ProjectorConfig("linear", 7)], encoder_depth=2).eval()
    seen = {}
    model.blocks[1].register_forward_hook(lambda m, i, o: seen.setdefault("h", o))
    _, zs = model(torch.randn(2, 4, 8, 8), torch.rand(2), torch.tensor([0, 1]))
    torch.testing.assert_close(zs[0], model.projectors[0](seen["h"]))
    with pytest.raises(ValueError, match="encoder_depth"):
        build_sit("SiT-T/2", 8, projectors=[ProjectorConfig("mlp", 7)], encoder_depth=5)


def test_label_dropout_only_in_train_mode():
    model = build_sit("SiT-T/2", 8, num_classes=3, class_dropout_prob=1.0)
    y = torch.tensor([0, 1, 2])
    model.train()
    torch.testing.assert_close(model.y_embedder(y), model.y_embedder.embedding_table.weight[[3, 3, 3]])
    model.eval()
    torch.testing.assert_close(model.y_embedder(y), model.y_embedder.embedding_table.weight[[0, 1, 2]])


def test_fused_attention_equals_explicit_softmax():
    torch.manual_seed(0)
    model = build_sit("SiT-T/2", 8, num_classes=3)
    attn = model.blocks[0].attn
    x = torch.randn(2, 16, 64)
    fused = attn(x)
    attn.fused = False
    torch.testing.assert_close(fused, attn(x), rtol=1e-5, atol=1e-5)


def test_slugs_round_trip():
    assert model_slug("SiT-B/2") == "sit-b-2" and model_name("sit-xl-2") == "SiT-XL/2"
    assert all(model_name(model_slug(n)) == n for n in MODEL_CONFIGS)
    with pytest.raises(ValueError):
        model_name("sit-q-2")


def test_a_slug_is_its_own_slug_and_unknown_sizes_are_refused():
    """Result files name a model by slug or by name; both give the same slug, anything else is an error."""
    for name in MODEL_CONFIGS:
        size, patch = name.removeprefix("SiT-").split("/")
        slug = f"sit-{size.lower()}-{patch}"
        assert model_slug(name) == model_slug(slug) == slug
    for bad in ("SiT-Q/2", "sit-b-3", "SiT-B", ""):
        with pytest.raises(ValueError, match="unknown model"):
            model_slug(bad)


def test_load_generator_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_sit("SiT-T/2", 8, num_classes=3, projectors=[ProjectorConfig("conv", 7)], encoder_depth=2)
    for p in model.parameters():
        p.data.normal_()
    from repabench.sit import generator_kwargs, generator_state_dict
    path = tmp_path / "0000010.pt"
    torch.save({"ema": generator_state_dict(model.state_dict()), "model": {"name": "SiT-T/2",
                "kwargs": generator_kwargs(model, 0.1)}, "step": 10, "run": {}, "latent_stats": {},
                "provenance": {}}, path)
    gen, meta = load_generator(path)
    assert not gen.training and meta["step"] == 10 and not gen.projector_specs
    x, t, y = torch.randn(2, 4, 8, 8), torch.rand(2), torch.tensor([0, 3])
    model.eval()
    torch.testing.assert_close(gen(x, t, y), model(x, t, y)[0])


def test_qk_norm_attention_against_hand_formula_and_checkpoint_round_trip(tmp_path):
    """Upstream --qk-norm: q, k of every head pass a LayerNorm (affine, eps 1e-5) over head_dim before attention."""
    torch.manual_seed(0)
    model = build_sit("SiT-T/2", 8, num_classes=3, qk_norm=True)
    for p in model.parameters():
        p.data.normal_(0, 0.3)
    attn = model.blocks[0].attn
    x = torch.randn(2, 16, 64)
    b, n, c = x.shape
    h = attn.num_heads
    q, k, v = (x @ attn.qkv.weight.T + attn.qkv.bias).reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4)

    def layer_norm(z, norm):
        mu = z.mean(-1, keepdim=True)
        var = ((z - mu) ** 2).mean(-1, keepdim=True)
        return (z - mu) / torch.sqrt(var + 1e-5) * norm.weight + norm.bias

    q, k = layer_norm(q, attn.q_norm), layer_norm(k, attn.k_norm)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c // h), dim=-1)
    expected = (weights @ v).transpose(1, 2).reshape(b, n, c) @ attn.proj.weight.T + attn.proj.bias
    torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-5)
    assert "blocks.0.attn.q_norm.weight" in model.state_dict()  # timm Attention's names, as upstream's checkpoints
    assert "blocks.0.attn.q_norm.weight" not in build_sit("SiT-T/2", 8, num_classes=3).state_dict()

    from repabench.sit import generator_kwargs, generator_state_dict
    assert "qk_norm" not in generator_kwargs(build_sit("SiT-T/2", 8, num_classes=3), 0.1)
    path = tmp_path / "0000010.pt"
    torch.save({"ema": generator_state_dict(model.state_dict()), "model": {"name": "SiT-T/2",
                "kwargs": generator_kwargs(model, 0.1)}, "step": 10}, path)
    gen, _ = load_generator(path)
    model.eval()
    xs, t, y = torch.randn(2, 4, 8, 8), torch.rand(2), torch.tensor([0, 3])
    torch.testing.assert_close(gen(xs, t, y), model(xs, t, y))
