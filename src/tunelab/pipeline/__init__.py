"""Multi-stage fine-tuning: stages trained in sequence, each starting from the last one's result."""
