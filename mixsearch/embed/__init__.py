"""Batched extraction and the content-keyed embedding cache."""

from mixsearch.embed.embeddings import Embeddings

__all__ = ["Embeddings"]
