"""Refinery's SFT Parquet rows read by the trainers' own code, in the trainers' venv
(benchmarks/.venv-trainers: `datasets`, TRL, transformers, torch CPU):

    python benchmarks/trl_sft.py CASES.json OUT.json

CASES.json: {"files": [parquet...], "tokenizer": tokenizer.json, "work": dir, "rows": N}.
Loads the rows with ``datasets.load_dataset("parquet", ...)``, collates the first ``rows`` with
TRL's own ``DataCollatorForLanguageModeling(padding_free=True)`` (what ``SFTTrainer`` uses for
pre-tokenized data), and trains a tiny Llama (random weights, built offline) for two steps
with ``SFTTrainer`` on CPU. OUT.json: the collated batch and the training losses.

``--bfd LENGTHS.json OUT.json`` instead packs conversations of the given token lengths with
TRL's ``pack_dataset(strategy="bfd")`` and reports its rows and fill, for
``benchmarks/sft.py``'s comparison.
"""

from __future__ import annotations

import json
import math
import os
import sys


def collate_and_train(cases: dict) -> dict:
    import torch
    from datasets import load_dataset
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from trl import SFTConfig, SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    torch.manual_seed(0)
    rows = load_dataset("parquet", data_files=cases["files"], split="train")
    collator = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)
    batch = collator([rows[i] for i in range(cases["rows"])])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=cases["tokenizer"], eos_token="<|endoftext|>", pad_token="<|pad|>"
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=8192,
    )
    model = LlamaForCausalLM(config)
    args = SFTConfig(
        output_dir=os.path.join(cases["work"], "trainer"),
        max_steps=2,
        per_device_train_batch_size=2,
        padding_free=True,
        max_length=None,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        seed=0,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "columns": rows.column_names,
        "num_rows": rows.num_rows,
        "batch": {
            "input_ids": batch["input_ids"][0].tolist(),
            "labels": batch["labels"][0].tolist(),
            "position_ids": batch["position_ids"][0].tolist(),
            "cu_seq_lens": batch["cu_seq_lens_q"].tolist(),
        },
        "losses": [float(x) for x in losses],
        "finite": all(math.isfinite(x) for x in losses),
    }


def bfd(lengths: list[int], seq_len: int) -> dict:
    from datasets import Dataset
    from trl.data_utils import pack_dataset

    dataset = Dataset.from_dict({"input_ids": [[1] * n for n in lengths]})
    packed = pack_dataset(dataset, seq_len, strategy="bfd")
    tokens = sum(len(row) for row in packed["input_ids"])
    return {"rows": packed.num_rows, "tokens": tokens, "efficiency": tokens / (packed.num_rows * seq_len)}


if __name__ == "__main__":
    if sys.argv[1] == "--bfd":
        spec = json.loads(open(sys.argv[2]).read())
        result = bfd(spec["lengths"], spec["seq_len"])
        out = sys.argv[3]
    else:
        result = collate_and_train(json.loads(open(sys.argv[1]).read()))
        out = sys.argv[2]
    with open(out, "w") as f:
        json.dump(result, f)
