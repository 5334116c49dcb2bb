"""The medical case study: synthetic chest X-rays, diagnostic dialogues and a small
vision-language model."""
