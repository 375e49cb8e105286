"""Cheap checks that a named model file is what its key says it is, for ``refinery
validate`` and the start of ``run``: a file that would only fail inside a worker, after
annotate and dedup, fails here instead, with its key path.

Each check reads as little as tells a usable file from a wrong one: a header, or the
whole file where it is small and its parser is the only judge (sentencepiece).
"""

from __future__ import annotations

import gzip
import struct

import sentencepiece as spm

from pipeline.core import storage
from pipeline.core.sentencepiece import load_sentencepiece

# fastText's model header (fasttext.cc: FASTTEXT_FILEFORMAT_MAGIC_INT32, FASTTEXT_VERSION).
FASTTEXT_MAGIC = 793712314
FASTTEXT_VERSIONS = (11, 12)


def head(uri: str, options: storage.StorageOptions | None, size: int = 256) -> bytes:
    """The first ``size`` bytes of a file."""
    with storage.open_read(uri, options) as f:
        return f.read(size)


def check_fasttext(uri: str, options: storage.StorageOptions | None) -> None:
    """A fastText model (``.bin`` or quantized ``.ftz``) by its header; ``ValueError`` if not."""
    data = head(uri, options, 8)
    if len(data) < 8:
        raise ValueError(f"'{uri}' is not a fastText model: only {len(data)} bytes")
    magic, version = struct.unpack("<ii", data)
    if magic != FASTTEXT_MAGIC:
        raise ValueError(f"'{uri}' is not a fastText model (.bin or .ftz): its header is not fastText's")
    if version not in FASTTEXT_VERSIONS:
        raise ValueError(f"'{uri}' is a fastText model of format version {version}; this fastText reads 11 and 12")


def fasttext_labels(uri: str, options: storage.StorageOptions | None) -> list[str]:
    """The labels of a fastText model, read from its dictionary without loading the model
    (fastText's ``Args::save`` then ``Dictionary::save``: labels are the entries of type 1).
    ``ValueError`` if the file is not a fastText model or ends inside its dictionary."""
    check_fasttext(uri, options)
    with storage.open_read(uri, options) as f:
        reader = _BufferedReader(f)
        # magic, version; 12 int32 args (dim .. lrUpdateRate) and the double t
        reader.take(8 + 12 * 4 + 8)
        size, _nwords, nlabels = struct.unpack("<iii", reader.take(12))
        reader.take(16)  # ntokens, pruneidx_size (int64 each)
        labels = []
        for _ in range(size):
            word = reader.until_nul()
            (entry_type,) = struct.unpack("<b", reader.take(9)[8:])
            if entry_type == 1:
                labels.append(word.decode("utf-8", errors="replace"))
        if len(labels) != nlabels:
            raise ValueError(f"'{uri}': its dictionary lists {len(labels)} labels, its header {nlabels}")
        return labels


class _BufferedReader:
    def __init__(self, f, chunk: int = 1 << 20) -> None:
        self.f, self.chunk, self.buffer, self.at = f, chunk, b"", 0

    def _fill(self, need: int) -> None:
        while len(self.buffer) - self.at < need:
            more = self.f.read(self.chunk)
            if not more:
                raise ValueError("not a fastText model: the file ends inside its dictionary")
            self.buffer = self.buffer[self.at :] + more
            self.at = 0

    def take(self, n: int) -> bytes:
        self._fill(n)
        out = self.buffer[self.at : self.at + n]
        self.at += n
        return out

    def until_nul(self) -> bytes:
        while (end := self.buffer.find(b"\0", self.at)) < 0:
            self._fill(len(self.buffer) - self.at + 1)
        out = self.buffer[self.at : end]
        self.at = end + 1
        return out


def check_sentencepiece(uri: str, options: storage.StorageOptions | None) -> spm.SentencePieceProcessor:
    """The loaded sentencepiece model; ``ValueError`` if the file is not one."""
    try:
        return load_sentencepiece(uri, options)
    except (RuntimeError, OSError) as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"'{uri}' is not a sentencepiece model ({detail})") from None


KENLM_BINARY_MAGIC = b"mmap lm http://kheafield.com/code"


def check_kenlm(uri: str, options: storage.StorageOptions | None) -> None:
    """A KenLM binary (``build_binary``, CCNet's ``*.arpa.bin``) or an ARPA file, plain or
    gzipped, by its first bytes; ``ValueError`` if neither."""
    data = head(uri, options, 4096)
    if data.startswith(KENLM_BINARY_MAGIC):
        return
    if data.startswith(b"\x1f\x8b"):
        with storage.open_read(uri, options) as f, gzip.GzipFile(fileobj=f) as unzipped:
            try:
                data = unzipped.read(4096)
            except (OSError, EOFError) as exc:
                raise ValueError(f"'{uri}' is gzipped but cannot be read: {exc}") from None
    if data.lstrip().startswith(b"\\data\\"):
        return
    raise ValueError(
        f"'{uri}' is neither a KenLM binary nor an ARPA file (an ARPA file starts with \\data\\; "
        "`refinery train-lm` writes one)"
    )
