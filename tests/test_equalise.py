"""Equalising YAMNet's trunk with the head (backbones/equalise.py): the classifier is kept, the head's columns even out."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from edgemaker.backbones import get_spec, tfnet, yamnet  # noqa: E402
from edgemaker.backbones.equalise import equalise_into_head, pooled_trunk  # noqa: E402
from edgemaker.backbones.weights import resolve_weights  # noqa: E402


def relative_error(a, b) -> float:
    return float(((a - b).norm(dim=1) / b.norm(dim=1)).max())


def test_equalising_into_the_head_keeps_the_classifier_and_evens_the_head():
    torch.manual_seed(0)
    mel = (torch.randn(6, 96, 64) * 1.5 - 3.0).clamp(-6.9, 3.0)  # log-mel-like: ln(mel + 0.001)
    body = yamnet.embedding(resolve_weights(get_spec("yamnet").weights))
    head = torch.nn.Linear(1024, 5)
    with torch.no_grad():  # a head with standardisation folded in: column ranges 10,000x apart
        head.weight.mul_(10 ** torch.linspace(-2, 2, 1024)[torch.randperm(1024)])
        embedding, logits = body(mel), head(body(mel))
    columns = head.weight.detach().abs().amax(dim=0)
    s = equalise_into_head(body, head)
    assert s is not None
    with torch.no_grad():
        assert relative_error(head(body(mel)), logits) < 1e-4
        assert relative_error(body(mel) * s, embedding) < 1e-4  # the pooled embedding, divided by s
    spread = lambda c: float(c.max() / c.median())  # noqa: E731
    assert spread(head.weight.detach().abs().amax(dim=0)) < spread(columns) / 5  # measured: 118 -> 16


def test_relu6_trunks_and_bodies_that_do_not_pool_into_the_head_are_left_alone():
    relu6 = tfnet.mobilenet_v1(0.25, in_channels=1, bn=False)
    assert pooled_trunk(relu6) is None and pooled_trunk(tfnet.pooled(tfnet.with_relu(relu6))) is None
    body = yamnet.embedding()
    assert pooled_trunk(body) is body.net
    head = torch.nn.Linear(256, 3)
    before = head.weight.detach().clone()
    wrapped = tfnet.pooled(relu6)
    assert equalise_into_head(wrapped, head) is None and torch.equal(before, head.weight)
