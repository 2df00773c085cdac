"""Embeddings of each image's horizontal mirror, for test-time flip averaging.

The centre crop and resize are symmetric, so mirroring the prepared (N, S, S, 3) batch is the same
as preparing the mirrored file. The mirrored embeddings are cached under their own backbone id.
"""

from __future__ import annotations

import dataclasses

import numpy as np


class FlippedBackbone:
    """`backbone` run on the horizontal mirror of every image (width is axis 2 of NHWC)."""

    def __init__(self, backbone) -> None:
        self.backbone = backbone
        self.spec = dataclasses.replace(backbone.spec, name=f"{backbone.spec.name}.hflip")

    def embed(self, batch: np.ndarray) -> np.ndarray:
        return self.backbone.embed(np.ascontiguousarray(batch[:, :, ::-1]))
