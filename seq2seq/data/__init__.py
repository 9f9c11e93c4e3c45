"""Corpora and their preparation: readers, synthetic tasks, tokenizers, batches, the prepared store."""
