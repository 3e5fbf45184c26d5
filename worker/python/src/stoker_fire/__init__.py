"""FIRE payloads (docs/fire.md): the training entrypoint, the self-play generation server
and the pieces they share.

    parsing         teacher `Score:/Feedback:` and student `Thought:/Answer:` formats
    prompts         what the student and the teacher see (LLaVA messages)
    chat_template   LLaVA messages -> model text through the model's Jinja chat template
                    (jinja2, as transformers renders it; common/chat-templates.json)
    selfplay_rules  the self-play dialogue rules, as pure code over batched callables
    llava_data      LLaVA conversation JSON: reading, checking, a synthetic set
    backends        model backends by name: hf (transformers + peft), tiny (plain PyTorch)
    hf              the hf backend: LLaVA-NeXT, LoRA, HF Trainer, batched greedy generate
                    (hf_model, hf_data, hf_generate, hf_train)
    tiny            the tiny backend: a 0.8M-parameter VLM that learns synth's task on CPU
                    (tiny_text, tiny_model, tiny_generate, tiny_train)
    synth           `python -m stoker_fire.synth`: synthetic FIRE data with rendered images
                    (synth_task, synth_images, synth_records)
    train           `python -m stoker_fire.train --config x.yaml` (TRL-style entrypoint)
    selfplay        `python -m stoker_fire.selfplay`: stoker server mode, one shard of seeds at a time
    evaluate        `python -m stoker_fire.evaluate`: FIRE-Bench fixed and free dialogues
                    (evaluate_data, evaluate_fixed, evaluate_free, evaluate_outputs)
    external        `python -m stoker_fire.external -- CMD`: a user's HF Trainer script, read
                    from what it prints (external_output, external_child)

A module named X_part is a part of X: X imports it and gathers the names other code uses, so
`from stoker_fire import tiny` (or hf, ...) stays the way in; the parts import nothing of X.

Importing the package, parsing, prompts, chat_template, selfplay_rules and llava_data needs
neither torch nor transformers (chat_template renders with jinja2).
"""
