"""Tokenizers trained from scratch on the user's text: byte-level BPE and character-level.

Owns reading training text from data files, building the ``tokenizers`` pipelines and saving them
where ``AutoTokenizer`` loads them. Does not own tokenizing training data (``tunelab.data``) or
building models (``tunelab.models``).
"""
