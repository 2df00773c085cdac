"""`data inspect --label-issues`: likely label errors of a whole folder, before any training.

Every usable file is embedded by a pretrained backbone (the feature cache that training shares,
so a later `edgemaker train` extracts nothing twice) and evaluate/label_issues.py ranks them.
"""

from __future__ import annotations

from ...progress import Progress, SilentProgress
from ..validate import ValidationReport

IMAGE_BACKBONE = "efficientnet_lite0"  # the image default of `edgemaker train`
AUDIO_BACKBONE = "aisfx"  # the first sound default (a pretrained sound-event embedding)


def folder_label_issues(report: ValidationReport, name, backbone: str | None = None,
                        progress: Progress | None = None) -> dict:
    """The label-issue record (evaluate/label_issues.LabelIssues.to_dict()) for every sample of `report`;
    `name(path)` writes a path. `backbone`: any pretrained backbone of the folder's modality."""
    from ...backbones import get_spec
    from ...backbones.runtime import Backbone
    from ...errors import EdgemakerError
    from ...evaluate.label_issues import label_issues
    from ...features.cache import FeatureCache
    from ...features.extract import extract_embeddings

    progress = progress or SilentProgress()
    spec = get_spec(backbone or (IMAGE_BACKBONE if report.modality == "image" else AUDIO_BACKBONE))
    if spec.modality != report.modality:
        raise EdgemakerError(f"--backbone {spec.name}: it is for {spec.modality}, and the folder holds "
                             f"{report.modality}; see `edgemaker backbones`")
    if spec.weights.kind == "trained":
        raise EdgemakerError(f"--backbone {spec.name}: it is trained per run; choose a pretrained one "
                             "(see `edgemaker backbones`)")
    samples = report.samples
    cache = FeatureCache(None)
    try:
        emb = extract_embeddings(samples, Backbone(spec), cache, 0, None, progress, desc=f"embed ({spec.name})")
    finally:
        cache.close()
    return label_issues(samples, emb, name, spec.name).to_dict()
