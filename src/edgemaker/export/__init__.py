"""Stitch backbone + head into one file, quantize it, and run exported files for evaluation."""

from .quantization import Quantization

__all__ = ["Quantization"]
