"""What every trainer shares: the epoch loop with early stopping and best-state restore (loop.py)."""
