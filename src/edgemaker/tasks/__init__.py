"""Task API: create(train, validation, options) -> evaluate(test) -> export(dir, quantization)."""
