"""Task metrics: classification, answer text, JSON fields, and scoring prediction files against references."""
