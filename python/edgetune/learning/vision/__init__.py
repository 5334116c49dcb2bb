"""A LLaVA-style vision-language model for the same federated LoRA protocol as the text model:
building and pinning it (`model`), encoding image + question + answer (`encode`), training
(`train`: pre-training and LoRA rounds on the text model's loop) and validation (`evaluate`:
the text model's candidate scoring)."""
