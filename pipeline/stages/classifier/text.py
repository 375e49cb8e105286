"""The one line of text a fastText classifier reads, made the same way for scoring
(the stage) and for training (``refinery train-classifier``)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.stages.classifier.config import TextPreparation


def prepare_texts(text: pa.Array | pa.ChunkedArray, prepare: TextPreparation) -> list[str]:
    """``TextPreparation``'s steps, in its order: cut, line breaks, lower-case."""
    if prepare.max_chars is not None and (pc.max(pc.utf8_length(text)).as_py() or 0) > prepare.max_chars:
        text = pc.utf8_slice_codeunits(text, 0, prepare.max_chars)
    if prepare.newlines == "space":
        # fastText's tokenizer already splits words on \r, \t, \v and \f; only \n ends its line
        lines = pc.replace_substring(text, "\n", " ").to_pylist()
    else:
        lines = [" ".join(t.strip().splitlines()) for t in text.to_pylist()]
    return [t.lower() for t in lines] if prepare.lowercase else lines
