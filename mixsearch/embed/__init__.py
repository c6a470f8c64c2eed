"""Batched extraction and the content-keyed embedding cache."""

from mixsearch.embed.cache import CacheEntry, EmbeddingCache
from mixsearch.embed.embeddings import Embeddings
from mixsearch.embed.extract import embed_benchmark, embed_records

__all__ = ["CacheEntry", "EmbeddingCache", "Embeddings", "embed_benchmark", "embed_records"]
