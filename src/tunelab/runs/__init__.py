"""The run folder, owned here: its layout and writing (run_directory), reading a run back (reading),
keep, resume or train on a rerun (decision), the model card (model_card), one process per folder
(lock) and the atomic file writes every package uses (atomic)."""
