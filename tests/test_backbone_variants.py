"""Backbone variants as parameters of one entry (cut depth, input size), with the generated names
kept valid, and the registry as a leaf that its families register into."""

from __future__ import annotations

import pytest

from edgemaker.backbones import create_spec, get_spec, list_backbones
from edgemaker.backbones.stages import stages
from edgemaker.backbones.truncated import depth_dims, trunk
from edgemaker.errors import EdgemakerError


def test_depth_and_input_size_are_parameters_and_the_old_names_stay_valid():
    cut = create_spec("efficientnet_lite0", depth=5, input_size=96)
    assert cut.name == "efficientnet_lite0_k5" and cut.image.size == 96
    assert cut == get_spec("efficientnet_lite0_k5").with_image_size(96)  # a config.json or cache naming it
    assert cut.feature_dim == depth_dims("lite0")[4] < get_spec("efficientnet_lite0").feature_dim
    assert create_spec("efficientnet_lite0", input_size=128).image.size == 128
    assert create_spec("aisfx", depth=2) == get_spec("aisfx_k2")
    assert all(not s.name.endswith("_k5") for s in list_backbones())  # variants are usable, not listed
    with pytest.raises(EdgemakerError, match="depth must be 1..16"):
        create_spec("efficientnet_lite0", depth=99)
    with pytest.raises(EdgemakerError, match="cannot be cut by depth"):
        create_spec("small_cnn", depth=2)


def test_stages_expose_the_trunk_without_its_private_attributes():
    import torch

    net = trunk("lite0", 64)
    st = stages(net)
    x = st.stem(torch.zeros(1, 3, 64, 64))
    for block in st.blocks:
        x = block(x)
    assert len(st.blocks) == len(depth_dims("lite0")) and st.output_channels() == depth_dims("lite0")
    assert st.head(x).shape[1] == get_spec("efficientnet_lite0").feature_dim
