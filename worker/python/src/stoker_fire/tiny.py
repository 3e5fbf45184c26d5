r"""The `tiny` model backend of the FIRE payloads: a small vision-language model in plain PyTorch
that trains and generates on a CPU in seconds (the fire-mini demo, tests). Same interface as
stoker_fire.hf (see stoker_fire/backends.py).

    from stoker_fire import tiny
    model, tok = tiny.load("tiny-new", seed=1)                     # random weights, base vocabulary
    model, tok = tiny.load("/out/student/final")                    # a trained model
    gen = tiny.make_generator("/out/student/final", seed=0, adapter=None, image_root="/data/images",
                              max_new_tokens=32, batch_size=32)
    texts = gen([Prompt("id", "student", "a.png", tuple(student_messages("How many dots?", [], [])))])

Model names:
    tiny-new (alias tiny-random)   a fresh, randomly initialised model; its weights are a function
                                   of the seed. stoker_fire.train builds its vocabulary from the base
                                   vocabulary plus every word of the training data; a generator
                                   made from the name alone gets the base vocabulary.
    a directory                    OUTPUT/final or OUTPUT/checkpoint-N written by this backend
                                   (config.json, vocab.json, model.pt). Training from it continues
                                   from its weights at step 0 (new words of the data are appended
                                   to its vocabulary); RESUME_FROM=checkpoint-N continues the run.
    The hf-style `adapter` does not apply: the tiny backend trains every weight and a trained
    model is a directory of its own, so adapter must be None (BAD_CONFIG otherwise).

Tokenizer: word level and reversible. A text is cut into `\n`, words (letters, with the space in
front of them), digit runs (likewise), single other characters (likewise) and lone whitespace,
so joining the pieces gives the text back; `<image>` and the teacher's instruction
(stoker_fire.prompts.TEACHER_INSTRUCTION: constant, so one token instead of ~85) are one piece each.
A piece that is not in the vocabulary encodes as <unk> (decoded as the empty string).

Rendering (render(); the ONE function that both training and generation use): <bos>, then per
message its role token (<human> / <gpt>) and its text's tokens; a gpt message ends with <eot>.
A generation prompt (messages ending with a human message) ends with <gpt>, and the model
writes until <eot>. The loss is on every gpt message's tokens and its <eot>. A record with an
image but no `<image>` mark gets one in front of its first human message (as stoker_fire.hf does);
each `<image>` becomes IMAGE_TOKENS (4) image positions, filled with the image encoder's
output (prefix embeddings where the mark is).

Architecture (TinyConfig; about 0.8M parameters at the defaults): the image, resized to
image_size (32), goes through 4 convolutions (3x3, strides 1, 2, 2, 2, GroupNorm) to a 4x4
grid; the grid and its mean go through one linear map to the 4 image embeddings. Text: token
embeddings, a token shift (each input plus linear maps of the `shift` (4) inputs before it, a
short causal convolution as in H3/Mamba, so "the word after `Answer:`" is visible to the first
layer), learned positions, a pre-LayerNorm causal transformer (layers x heads, GELU MLP of
4 x d_model), output tied to the token embedding. Generation is batched greedy decoding with a
KV cache and left padding (each sequence's positions count from its first real token and pads
are masked everywhere, so a prompt decodes the same alone or in a batch).

Training (train()): full-weight AdamW (lr, weight decay, betas 0.9/0.999), warmup + cosine /
linear / constant schedule, gradient clipping at 1.0, gradient accumulation, fixed data order
per (seed, epoch), so a run resumed from checkpoint-N ends with the same weights as an
uninterrupted one. Writes OUTPUT/checkpoint-N (model, vocabulary, optimizer, trainer_state.json)
every save_steps steps and at the end, OUTPUT/final and OUTPUT/metrics.json. Events as stoker_fire.hf:
progress per step, metrics {step, loss, lr, gradNorm, epoch} per logging step, checkpoint per
save; SIGTERM -> a checkpoint at the end of the step, then Preempted. The hf-only options
(lora_*, deepspeed, gradient_checkpointing, attn_implementation, bf16, tf32,
dataloader_num_workers, train_projector) are ignored; one process only (WORLD_SIZE 1).

Modules (this one gathers their names: `from stoker_fire import tiny` is the backend):
    tiny_text      the tokenizer, render(), encode_records()   pure Python
    tiny_model     TinyConfig, the nn.Modules, load/save, the image input
    tiny_generate  generate_ids(), Generator, make_generator()
    tiny_train     train()
"""

from __future__ import annotations

from .tiny_generate import Generator, generate_ids, make_generator
from .tiny_model import (
    FORMAT,
    NAMES,
    TINY_NEW,
    TINY_RANDOM,
    Images,
    TinyConfig,
    count_parameters,
    grow_vocabulary,
    is_model_dir,
    load,
    new_cache,
    new_model,
    require,
    save,
)
from .tiny_text import (
    BOS,
    EOT,
    GPT,
    HUMAN,
    IMAGE,
    IMAGE_ID,
    IMAGE_TOKENS,
    PAD,
    SPECIALS,
    UNK,
    Encoded,
    Tokenizer,
    base_vocabulary,
    encode_records,
    pieces,
    record_texts,
    render,
    with_image_mark,
)
from .tiny_train import train

__all__ = [
    "TINY_NEW",
    "TINY_RANDOM",
    "NAMES",
    "FORMAT",
    "SPECIALS",
    "PAD",
    "UNK",
    "BOS",
    "EOT",
    "HUMAN",
    "GPT",
    "IMAGE",
    "IMAGE_ID",
    "IMAGE_TOKENS",
    "TinyConfig",
    "Tokenizer",
    "pieces",
    "base_vocabulary",
    "with_image_mark",
    "render",
    "require",
    "load",
    "save",
    "Images",
    "Generator",
    "make_generator",
    "generate_ids",
    "new_model",
    "new_cache",
    "is_model_dir",
    "count_parameters",
    "grow_vocabulary",
    "record_texts",
    "Encoded",
    "encode_records",
    "train",
]
