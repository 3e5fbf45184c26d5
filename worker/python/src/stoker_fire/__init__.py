"""FIRE payloads (docs/fire.md): the training entrypoint, the self-play generation server
and the pieces they share.

    parsing         teacher `Score:/Feedback:` and student `Thought:/Answer:` formats
    prompts         what the student and the teacher see (LLaVA messages)
    selfplay_rules  the self-play dialogue rules, as pure code over batched callables
    llava_data      LLaVA conversation JSON: reading, checking, a synthetic set
    backends        model backends by name: hf (transformers + peft), tiny (plain PyTorch)
    hf              the hf backend: LLaVA-NeXT, LoRA, HF Trainer, batched greedy generate
    tiny            the tiny backend: a 0.8M-parameter VLM that learns synth's task on CPU
    synth           `python -m stoker_fire.synth`: synthetic FIRE data with rendered images
    train           `python -m stoker_fire.train --config x.yaml` (TRL-style entrypoint)
    selfplay        `python -m stoker_fire.selfplay`: stoker server mode, one shard of seeds at a time
    evaluate        `python -m stoker_fire.evaluate`: FIRE-Bench fixed and free dialogues

Importing the package, parsing, prompts, selfplay_rules and llava_data needs neither torch
nor transformers.
"""
