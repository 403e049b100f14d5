"""LightGBM models: training, the model registry, and loading models for scoring."""
