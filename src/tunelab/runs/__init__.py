"""The run folder, owned here: its layout and writing (run_directory), keep, resume or train on a
rerun (decision), the model card (model_card) and one process per folder (lock). Reading a finished
run's files is ``tunelab.run_files`` and atomic writes are ``tunelab.atomic``, in the base layer,
because layers below this one (models, features, methods) need them too."""
