"""Data: load files, recognise their format, tokenize with a loss mask, pack, collate."""
