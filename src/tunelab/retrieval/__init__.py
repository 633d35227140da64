"""Retrieval for RAG: documents -> word-window chunks -> a cached FAISS index -> top-k chunks per query.

``documents`` loads and chunks a folder of .txt/.md files or a JSONL of documents, ``embedder``
says what an embedding model must offer, ``index`` builds, caches on disk and searches the FAISS
index, and ``recall`` measures recall@k where the answer-bearing document is known. The embedding
model itself and the prompt that puts retrieved chunks before a question live elsewhere.
"""
