"""Memory: embedding models, vector stores behind one interface, filters, and (part B) keyword
index, hybrid fusion, chunking and the RAG pipeline. See ``README.md`` beside this file."""

from __future__ import annotations
