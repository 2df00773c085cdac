"""Dataset tools (`edgemaker data ...`): inspect, sample, split and clean a data folder.

Each reads the folder through the product's own validation pass and never writes to it; the ones
that produce data write a new folder that appears only once it is complete.
"""
