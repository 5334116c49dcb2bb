"""edgetune: blockchain-coordinated federated LoRA fine-tuning for edge servers."""

__version__ = "0.1.0"
