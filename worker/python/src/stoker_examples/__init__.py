"""Example payloads: small, real PyTorch programs that speak stoker's payload protocol on a
CPU in seconds, with nothing to download. The CPU specs run them, and they are the models
to copy when writing a payload of your own.

    smoke_train   `python -m stoker_examples.smoke_train`: an MLP trained for real
                  (progress, metrics, checkpoints, resume, preemption, several ranks);
                  the payload of training-configs/smoke-cpu.yaml (its files: smoke_files)
    make_items    `python -m stoker_examples.make_items`: writes N JSONL items (a one-shot
                  step; the first stage of training-configs/generate-cpu.yaml)
    toy_generate  `python -m stoker_examples.toy_generate`: a server-mode payload that loads
                  a small model once and scores shard after shard (the pool stage of
                  training-configs/generate-cpu.yaml)

Each module's docstring gives its inputs, outputs, events, exit codes and commands to
paste. Importing the package or any of its modules does not import torch (the heavy
imports are inside main(), as in TRL's scripts).
"""
