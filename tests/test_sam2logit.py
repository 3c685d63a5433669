"""Upstream's `sam2logit-*` baseline on a tiny random-init SAM2: one channel per point prompt, bilinearly resized.

The oracle asks the model about one prompt at a time (upstream batches 64 prompts per call) at the point of the
spec's grid (x, y = linspace(0, 1023, n), row-major), and resizes the mask logits with a hand-written bilinear
matrix (align_corners=False).
"""

import numpy as np
import torch

import repabench.encoders as enc
from repabench.encoders.sam2logit import Sam2LogitEncoder
from test_encoder_fidelity import _bilinear_matrix as bilinear_matrix


def tiny_sam2():
    from transformers import Sam2Config, Sam2ImageProcessorFast, Sam2Model, Sam2Processor
    from transformers.models.sam2.configuration_sam2 import Sam2HieraDetConfig, Sam2VisionConfig

    trunk = Sam2HieraDetConfig(hidden_size=8, num_attention_heads=1, blocks_per_stage=[1, 1, 2, 1],
                               embed_dim_per_stage=[8, 16, 32, 64], num_attention_heads_per_stage=[1, 1, 1, 1],
                               global_attention_blocks=[3])
    vision = Sam2VisionConfig(backbone_config=trunk, backbone_channel_list=[64, 32, 16, 8], fpn_hidden_size=32)
    config = Sam2Config(vision_config=vision, prompt_encoder_config={"hidden_size": 32, "mask_input_channels": 4},
                        mask_decoder_config={"hidden_size": 32, "mlp_dim": 32, "num_attention_heads": 2,
                                             "iou_head_hidden_dim": 32})
    torch.manual_seed(0)
    return Sam2Model(config).eval(), Sam2Processor(image_processor=Sam2ImageProcessorFast())


def test_sam2logit_tokens_are_per_prompt_mask_logits_resized_bilinearly():
    network, processor = tiny_sam2()
    encoder = Sam2LogitEncoder("sam2logit-vit-s2", 2, network, processor, pretrained=False).freeze()
    images = torch.randint(0, 256, (2, 3, 256, 256), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        tokens = encoder(images, grid=4).double().numpy()
    assert tokens.shape == (2, 16, 4)
    grid_points = [(x, y) for y in (0.0, 1023.0) for x in (0.0, 1023.0)]  # row-major: y outer
    for k, (px, py) in enumerate(grid_points):
        inputs = processor(images=list(images), input_points=[[[[px, py]]]] * 2, input_labels=[[[1]]] * 2,
                           return_tensors="pt")
        with torch.no_grad():
            logits = network(**inputs, multimask_output=False).pred_masks[:, 0, 0].double().numpy()  # [2, h, w]
        rows, cols = bilinear_matrix(logits.shape[1], 4), bilinear_matrix(logits.shape[2], 4)
        expected = np.einsum("ri,bij,cj->brc", rows, logits, cols).reshape(2, 16)
        np.testing.assert_allclose(tokens[:, :, k], expected, rtol=1e-4, atol=1e-4)
    assert not np.allclose(tokens[..., 0], tokens[..., 3])  # different prompts, different channels


def test_sam2logit_registry_entries():
    for size in "sbl":
        for side in (8, 16):
            spec = enc.encoder_spec(f"sam2logit-vit-{size}{side}")
            assert spec.family == "sam2logit" and spec.embed_dim == side * side
            assert enc.weight_names(spec.name) == [f"sam2-hf-{size}"]
    from repabench.weights import WEIGHTS

    assert WEIGHTS["sam2-hf-b"].source == "hfrepo:facebook/sam2-hiera-base-plus@main"
