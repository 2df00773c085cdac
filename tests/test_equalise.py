"""Cross-layer equalisation (backbones/equalise.py): the float function is kept, the ranges move."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from edgemaker.backbones import get_spec, tfnet, yamnet  # noqa: E402
from edgemaker.backbones.equalise import (  # noqa: E402
    activation_ranges, conv_sequence, equalise_activations, equalise_weights, input_ranges, is_depthwise,
    output_ranges, scalable_pairs,
)
from edgemaker.backbones.weights import resolve_weights  # noqa: E402


@pytest.fixture(scope="module")
def net_and_patches():
    torch.manual_seed(0)
    net = yamnet.network(resolve_weights(get_spec("yamnet").weights))
    # log-mel-like patches: ln(mel + 0.001) lies in about [-7, 3]
    patches = (torch.randn(6, 1, 96, 64) * 1.5 - 3.0).clamp(-6.9, 3.0)
    with torch.no_grad():
        reference = net(patches).mean(dim=(2, 3))
    return net, patches, reference


def relative_error(a, b) -> float:
    return float(((a - b).norm(dim=1) / b.norm(dim=1)).max())


def test_weight_equalisation_keeps_the_float_function(net_and_patches):
    net, patches, reference = net_and_patches
    eq = copy.deepcopy(net)
    layers = conv_sequence(eq)
    assert equalise_weights(layers) == len(layers) - 1  # every YAMNet block is plain ReLU with a folded bias
    with torch.no_grad():
        assert relative_error(eq(patches).mean(dim=(2, 3)), reference) < 1e-4
    # the pair equalised last has equal ranges on both sides; before, they were far apart
    before = output_ranges(conv_sequence(net)[-2]) / input_ranges(conv_sequence(net)[-1])
    after = output_ranges(layers[-2]) / input_ranges(layers[-1])
    assert float(before.max() / before.min()) > 10
    torch.testing.assert_close(after, torch.ones_like(after), rtol=1e-4, atol=0)


def test_activation_equalisation_keeps_the_float_function_and_evens_the_channels(net_and_patches):
    net, patches, reference = net_and_patches
    eq = copy.deepcopy(net)
    layers = conv_sequence(eq)
    ranges = activation_ranges(layers, eq, [patches[:3], patches[3:]])
    equalise_activations(layers, ranges)
    with torch.no_grad():
        assert relative_error(eq(patches).mean(dim=(2, 3)), reference) < 1e-4
    after = activation_ranges(layers, eq, [patches])
    for i in scalable_pairs(layers):
        alive = ranges[i] > 0
        spread_before = float(ranges[i][alive].max() / ranges[i][alive].min())
        spread_after = float(after[i][alive].max() / after[i][alive].min())
        assert spread_after <= spread_before * 1.0001
        if is_depthwise(layers[i + 1]) and spread_before < 100:  # into a depthwise conv: made equal outright
            assert spread_after == pytest.approx(1.0, rel=1e-3)


def test_relu6_blocks_are_left_alone():
    net = tfnet.mobilenet_v1(0.25, in_channels=1, bn=False)
    layers = conv_sequence(net)
    before = [layer.conv.weight.clone() for layer in layers]
    assert scalable_pairs(layers) == [] and equalise_weights(layers) == 0
    assert all(torch.equal(a, layer.conv.weight) for a, layer in zip(before, layers))
    assert len(scalable_pairs(conv_sequence(tfnet.with_relu(net)))) == len(layers) - 1


def test_equalising_into_the_head_keeps_the_classifier_and_evens_the_head(net_and_patches):
    from edgemaker.backbones.equalise import equalise_into_head, pooled_trunk

    _, patches, _ = net_and_patches
    body = yamnet.embedding(resolve_weights(get_spec("yamnet").weights))
    head = torch.nn.Linear(1024, 5)
    with torch.no_grad():  # a head with standardisation folded in: column ranges 10,000x apart
        head.weight.mul_(10 ** torch.linspace(-2, 2, 1024)[torch.randperm(1024, generator=torch.Generator().manual_seed(0))])
        mel = patches[:, 0]
        embedding, logits = body(mel), head(body(mel))
    columns = head.weight.detach().abs().amax(dim=0)
    s = equalise_into_head(body, head)
    assert s is not None
    with torch.no_grad():
        assert relative_error(head(body(mel)), logits) < 1e-4
        assert relative_error(body(mel) * s, embedding) < 1e-4  # the pooled embedding, divided by s
    spread = lambda c: float(c.max() / c.median())  # noqa: E731
    assert spread(head.weight.detach().abs().amax(dim=0)) < spread(columns) / 5  # measured: 118 -> 16
    # ReLU6 trunks, and bodies that do not say they mean-pool into the head, are left alone
    relu6 = tfnet.mobilenet_v1(0.25, in_channels=1, bn=False)
    assert pooled_trunk(relu6) is None and pooled_trunk(tfnet.pooled(tfnet.with_relu(relu6))) is None
