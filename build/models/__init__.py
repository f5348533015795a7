"""Which SAM: the model-type registry (Meta's ViT-B/L/H, seeded presets), checkpoints and their download, sample photos."""
