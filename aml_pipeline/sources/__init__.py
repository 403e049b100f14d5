"""Where daily SOT batches come from: a pluggable ``BatchSource`` interface."""
