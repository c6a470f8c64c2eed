"""Your own collection: index a folder of images, texts and image+text pairs with any
configured model (through the embedding cache), then search it with or without GR.

``python -m mixsearch index DIR --out INDEX`` and ``python -m mixsearch search INDEX "query"``
(:mod:`mixsearch.__main__`); docs/viewer.md describes both.
"""

from mixsearch.collection.index import embed_items, load_means, transductive_means, write_index
from mixsearch.collection.scan import Collection, Item, scan_folder
from mixsearch.collection.search import Index, check_encoder, embed_query, read_index, search

__all__ = ["Collection", "Index", "Item", "check_encoder", "embed_items", "embed_query",
           "load_means", "read_index", "scan_folder", "search", "transductive_means", "write_index"]
