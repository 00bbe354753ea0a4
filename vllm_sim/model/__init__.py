"""The synthetic model (SYNTHETIC, not a language model): which answer a prompt and seed get."""
