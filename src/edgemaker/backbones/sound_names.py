"""Names of cut sound backbones (efficientnet_lite0_mel_96x64_k8, aisfx_k2) and the backbone each
comes from: a leaf, so the front-end table can read them without importing the cutting code."""

from __future__ import annotations

import re

LITE0_MEL_NAME = re.compile(r"^efficientnet_lite0_mel_(\d+)x(\d+)(?:_k(\d+))?$")
AISFX_NAME = re.compile(r"^aisfx_k([1-3])$")


def base_backbone(name: str) -> str | None:
    """The registered backbone a cut one comes from ('efficientnet_lite0_mel', 'aisfx'), else None."""
    if LITE0_MEL_NAME.match(name):
        return "efficientnet_lite0_mel"
    return "aisfx" if AISFX_NAME.match(name) else None
