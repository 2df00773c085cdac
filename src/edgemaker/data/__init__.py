"""Data preparation: scan a folder, validate every file, split it, turn images into tensors."""
