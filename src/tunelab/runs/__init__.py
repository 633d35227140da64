"""The run folder: its layout, ownership checks and atomic writes."""
