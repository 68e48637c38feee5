"""Text in, text out: `encdec.pipeline(task, model=DIR, framework=...)`, as transformers' pipelines.

    from encdec import pipeline
    summarize = pipeline("summarization", model="path/to/model", framework="pt")
    summarize("A long text ...", num_beams=4, max_length=64)   # [{"summary_text": "..."}]

The tokenizers are the model folder's own (`encdec.tokenization.load_tokenizers`:
the folder's for the input, `decoder_tokenizer/`'s for the output when present). The
model is used through the ports' public contract alone (`from_pretrained`,
`generate`), so the same folder gives the same text in "pt", "tf" and "flax".
Generation options are the folder's generation_config.json, then the pipeline's
keyword arguments, then the call's.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from .errors import ConfigError, InputError
from .tokenization import Tokenizer, load_tokenizers

logger = logging.getLogger("encdec")

# task -> the key of each result, as transformers names it
TASKS = {
    "summarization": "summary",
    "translation": "translation",
    "text2text-generation": "generated",
}
FRAMEWORKS = {"pt": "EncoderDecoderModel", "tf": "TFEncoderDecoderModel", "flax": "FlaxEncoderDecoderModel"}
DEFAULT_BATCH_SIZE = 8


def task_key(task: str) -> str:
    """The result key prefix of `task` ("summary" for summarization); translation_xx_to_yy is translation."""
    if task.startswith("translation_"):
        task = "translation"
    if task not in TASKS:
        raise ConfigError(f"task {task!r} is not supported; expected one of {sorted(TASKS)} (or translation_xx_to_yy)")
    return TASKS[task]


def _framework_of(model: Any) -> str:
    for framework, name in FRAMEWORKS.items():
        if type(model).__name__ == name:
            return framework
    raise ConfigError(f"model is a {type(model).__name__}; expected a folder or one of {sorted(FRAMEWORKS.values())}")


def load_model(directory: str, framework: str) -> Any:
    """The port's model read from `directory` (`from_pretrained`), importing only that framework."""
    import encdec

    if framework not in FRAMEWORKS:
        raise ConfigError(f"framework={framework!r}; expected one of {sorted(FRAMEWORKS)}")
    return getattr(encdec, FRAMEWORKS[framework]).from_pretrained(directory)


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, possibly on an accelerator
        value = value.detach().cpu()
    return np.asarray(value)


class Text2TextPipeline:
    """Summarization, translation or text2text generation with one model and its tokenizers.

    Call it with a string or a list of strings; it returns transformers' shapes:
    `[{"summary_text": ...}]` per input (a list of `num_return_sequences` dicts per
    input when that is > 1). `return_tensors=True` adds the generated ids
    (`summary_token_ids`, ...), start token and padding left out.
    """

    def __init__(self, task: str, model: Any, tokenizer: Tokenizer, decoder_tokenizer: Optional[Tokenizer] = None,
                 framework: Optional[str] = None, device: Any = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 **generate_kwargs: Any) -> None:
        self.task = task
        self.key = task_key(task)
        self.model = model
        self.framework = framework or _framework_of(model)
        self.tokenizer = tokenizer
        self.decoder_tokenizer = decoder_tokenizer or tokenizer
        self.device = device
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size={batch_size!r}; expected an integer >= 1")
        self.batch_size = batch_size
        self.generate_kwargs = dict(generate_kwargs)
        config = model.config
        # The encoder's position table bounds the input; the tokenizer's own limit may be lower.
        self.max_input_length = min(config.encoder.max_positions, tokenizer.model_max_length)
        self.token_types = "token_type_ids" in tokenizer.model_input_names and getattr(
            config.encoder, "type_vocab_size", 0) > 0 and config.encoder.model_type != "bert-generation"
        if self.framework == "pt" and device is not None:
            self.model = model.to(device)

    # ------------------------------------------------------------------ steps
    def _texts(self, inputs: str | Sequence[str]) -> list[str]:
        texts = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            raise InputError(f"the input is {type(inputs).__name__}; expected a string or a list of strings")
        if not texts:
            raise InputError("the input is an empty list; expected at least one text")
        for i, text in enumerate(texts):
            if not text.strip():
                raise InputError(f"text {i} is empty; expected some text to {self.task.split('-')[0]}")
        return list(texts)

    def _encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=False)["input_ids"]]
        long = [(i, n) for i, n in enumerate(lengths) if n > self.max_input_length]
        if long:
            logger.warning(
                "%d input(s) are longer than the model's %d positions and were truncated (input %d has %d tokens)",
                len(long), self.max_input_length, long[0][0], long[0][1])
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_input_length,
                               return_tensors="np", return_token_type_ids=self.token_types)
        return dict(batch)

    def _generate(self, batch: dict[str, np.ndarray], options: dict[str, Any]) -> np.ndarray:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        if "token_type_ids" in batch:
            options = dict(options, token_type_ids=batch["token_type_ids"])
        if self.framework == "pt":
            import torch

            device = self.device if self.device is not None else next(self.model.parameters()).device
            as_tensor = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
            if "token_type_ids" in options:
                options["token_type_ids"] = as_tensor(options["token_type_ids"])
            with torch.no_grad():
                out = self.model.generate(as_tensor(ids), as_tensor(mask), **options)
        elif self.framework == "tf":
            import tensorflow as tf

            with tf.device(self.device) if self.device is not None else contextlib.nullcontext():
                out = self.model.generate(tf.constant(ids), tf.constant(mask), **options)
        else:
            import jax

            with jax.default_device(self.device) if self.device is not None else contextlib.nullcontext():
                out = self.model.generate(jax.numpy.asarray(ids), jax.numpy.asarray(mask), **options)
        if isinstance(out, dict) or hasattr(out, "sequences"):
            out = out["sequences"] if isinstance(out, dict) else out.sequences
        return _to_numpy(out)

    def _strip(self, row: np.ndarray) -> list[int]:
        """The generated ids: start token dropped, cut after the first eos, padding left out."""
        ids = [int(i) for i in row[1:]]
        config = self.model.generation_config
        eos = config.eos_token_id
        eos = set(eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos])
        for n, i in enumerate(ids):
            if i in eos:
                return ids[: n + 1]
        pad = config.pad_token_id
        while ids and pad is not None and ids[-1] == pad:
            ids.pop()
        return ids

    def batches(self, texts: list[str]) -> Iterator[list[str]]:
        for start in range(0, len(texts), self.batch_size):
            yield texts[start: start + self.batch_size]

    def run_batch(self, texts: list[str], options: dict[str, Any]) -> list[list[tuple[str, list[int]]]]:
        """(text, generated ids) for each of `num_return_sequences` outputs of each text of one batch."""
        rows = self._generate(self._encode(texts), options)
        per = rows.shape[0] // len(texts)
        decoded = self.decoder_tokenizer.batch_decode(rows, skip_special_tokens=True)
        return [[(decoded[i * per + k], self._strip(rows[i * per + k])) for k in range(per)]
                for i in range(len(texts))]

    def __call__(self, inputs: str | Sequence[str], batch_size: Optional[int] = None, return_text: bool = True,
                 return_tensors: bool = False, **generate_kwargs: Any) -> list:
        texts = self._texts(inputs)
        options = dict(self.generate_kwargs, **generate_kwargs)
        saved, self.batch_size = self.batch_size, batch_size or self.batch_size
        try:
            results = []
            for chunk in self.batches(texts):
                results.extend(self.run_batch(chunk, options))
        finally:
            self.batch_size = saved
        out = []
        for outputs in results:
            entries = []
            for text, ids in outputs:
                entry = {}
                if return_text:
                    entry[f"{self.key}_text"] = text
                if return_tensors:
                    entry[f"{self.key}_token_ids"] = ids
                entries.append(entry)
            out.append(entries[0] if len(entries) == 1 else entries)
        if isinstance(inputs, str) and not isinstance(out[0], dict):
            return out[0]
        return out


def pipeline(task: str, model: Any = None, framework: str = "pt", device: Any = None, tokenizer: Any = None,
             batch_size: int = DEFAULT_BATCH_SIZE, **generate_kwargs: Any) -> Text2TextPipeline:
    """A text-to-text pipeline for "summarization", "translation" or "text2text-generation".

    `model` is a model folder (read with the `framework` port's `from_pretrained`) or a
    loaded model of any port. `tokenizer` is a Tokenizer or a folder; by default the
    model folder's (its `decoder_tokenizer/` decodes, when present). `device`: a
    torch device for "pt", a TF device name for "tf", a jax device for "flax".
    Other keyword arguments are generation options for every call.

    Raises ConfigError: an unknown task or framework, a model folder without a
    tokenizer (naming the files expected and how to add one).
    """
    task_key(task)
    if model is None:
        raise ConfigError("no model; expected model=<a model folder> or a loaded model")
    if isinstance(model, (str, os.PathLike)):
        directory = os.fspath(model)
        if tokenizer is None:
            encoder_tok, decoder_tok = load_tokenizers(directory)
        loaded = load_model(directory, framework)
    else:
        loaded = model
        framework = _framework_of(model)
        if tokenizer is None:
            raise ConfigError("a loaded model has no folder to read a tokenizer from; expected tokenizer=<a "
                              "Tokenizer or a folder holding one>")
    if tokenizer is not None:
        if isinstance(tokenizer, (str, os.PathLike)):
            encoder_tok, decoder_tok = load_tokenizers(tokenizer)
        else:
            encoder_tok = decoder_tok = tokenizer
    return Text2TextPipeline(task, loaded, encoder_tok, decoder_tok, framework=framework, device=device,
                             batch_size=batch_size, **generate_kwargs)


__all__ = ["FRAMEWORKS", "TASKS", "Text2TextPipeline", "load_model", "pipeline", "task_key"]
