"""Document-grounded generation: a prompt template applied to each document of a corpus.

The patterns are rephrasing (WRAP, Maini et al. 2024, "Rephrasing the Web"; Nemotron-CC, Su et
al. 2024, which rewrites web pages in the style of Wikipedia for pretraining), question and
answer pairs about a page (Nemotron-CC's diverse QA pairs), and a description of a code file
(instruction back-translation, Li et al. 2023, writes the instruction a text answers). One
request per document, one round:

- ``produce: documents``: the answer is a new document (a ``text`` record, the pretraining
  path), ``documents-<source id>``; with ``keep_source`` the source document is a record too,
  in ``source_domain`` and without provenance, so that the mix holds real text beside its
  rewrites and the real-data floor (``stages.mix.min_real_fraction``) can hold.
- ``produce: conversations``: the answer's ``Question:``/``Answer:`` pairs, each a single-turn
  conversation (the chat path), ``documents-<source id>-q<n>``.

Every document read is a request or a named reject (``source_empty``, ``source_unreadable``);
every answer is records or a named reject (``empty_output``, ``refused``, ``too_short``,
``no_qa_pairs``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

from pipeline.core import storage
from pipeline.generation.client import ChatRequest, ChatResponse
from pipeline.generation.config import DocumentsConfig
from pipeline.generation.evol_instruct import response_problem
from pipeline.generation.prompts import PromptTemplate
from pipeline.generation.rounds import RoundResult, SingleRoundMethod

_WORD = re.compile(r"\w+")
_PREAMBLE = re.compile(r"(?is)^\s*here is (?:a|the) paraphrased version\s*:?\s*")
_QA = re.compile(
    r"(?ims)^[ \t]*(?:\*\*)?(?:Q|Question)(?:[ \t]*\d+)?[ \t]*[:.)](?:\*\*)?[ \t]*(?P<question>.+?)\s*\n"
    r"[ \t]*(?:\*\*)?(?:A|Answer)(?:[ \t]*\d+)?[ \t]*[:.)](?:\*\*)?[ \t]*(?P<answer>.+?)"
    r"(?=\n[ \t]*(?:\*\*)?(?:Q|Question)(?:[ \t]*\d+)?[ \t]*[:.)]|\Z)"
)


def qa_pairs(text: str) -> list[tuple[str, str]]:
    """The ``Question: ... / Answer: ...`` pairs of an answer (numbered, bold or abbreviated
    labels too), in order; a pair with an empty side is left out."""
    pairs = []
    for match in _QA.finditer(text):
        question, answer = match["question"].strip(), match["answer"].strip()
        if question and answer:
            pairs.append((question, answer))
    return pairs


def cut(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` characters, at the last whitespace before the limit."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    space = max(head.rfind(" "), head.rfind("\n"))
    return head[:space] if space > max_chars // 2 else head


def _source(
    config: DocumentsConfig, options: storage.StorageOptions | None
) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """``(id, text)`` of the first ``max_documents`` documents with text, files in name order;
    and what was skipped on the way, by reason (``source_empty``, ``source_unreadable``: a
    JSON line that holds no document)."""
    from pipeline.core.layout import shard_key
    from pipeline.phases.annotate.readers import open_source
    from pipeline.phases.annotate.validation import InputConfig, InputValidation, ShardRejected

    source = InputConfig(
        uri=config.source,
        format=config.format,
        text_column=config.text_column,
        id_column=config.id_column,
        domain_column=None,
        url_column=None,
        storage_options=options or storage.StorageOptions(),
    )
    validation = InputValidation(source)
    documents: list[tuple[str, str]] = []
    skipped = {"source_empty": 0, "source_unreadable": 0}
    for uri in storage.list_files(config.source, source.storage_options):
        key = shard_key(config.source, uri)
        try:
            with open_source(uri, key, source.storage_options, validation, 1024) as reader:
                for batch in reader.batches():
                    skipped["source_unreadable"] += batch.bad.num_rows
                    texts = batch.raw.column(config.text_column).to_pylist()
                    rows = batch.rows.to_pylist()
                    ids = (
                        batch.raw.column(config.id_column).to_pylist()
                        if config.id_column
                        else [f"{key}:{row}" for row in rows]
                    )
                    for doc_id, text in zip(ids, texts):
                        if not text or not text.strip():
                            skipped["source_empty"] += 1
                            continue
                        documents.append((str(doc_id) if doc_id is not None else f"{key}:?", text))
                        if len(documents) >= config.max_documents:
                            return documents, skipped
        except ShardRejected as exc:
            raise ValueError(f"{uri}: {exc}") from None
    return documents, skipped


class GroundedGeneration(SingleRoundMethod):
    method = "documents"
    TEMPLATE_VARIABLES = {"template": {"document"}}

    def __init__(
        self, config: DocumentsConfig, sampling: dict[str, Any], seed: int, options: storage.StorageOptions | None
    ) -> None:
        self.config = config
        self.sampling = sampling
        self.seed = seed
        self.documents, self.skipped = _source(config, options)
        self.template = PromptTemplate.load(config.template, self.TEMPLATE_VARIABLES["template"], options)

    @classmethod
    def source_problems(cls, config: DocumentsConfig, options: Any = None) -> list[str]:
        if not storage.list_files(config.source, options or storage.StorageOptions()):
            return [f"source: no input files found at '{config.source}'"]
        try:
            documents, _ = _source(config, options)
        except (OSError, ValueError) as exc:
            return [f"source: {exc}"]
        return [] if documents else [f"source: no documents with text at {config.source}"]

    def templates(self) -> list[PromptTemplate]:
        return [self.template]

    def max_requests(self) -> int:
        return len(self.documents)

    def budget_formula(self) -> str:
        return f"{len(self.documents)} documents x 1"

    def first_requests(self) -> list[ChatRequest]:
        return self._requests(random.Random(f"{self.seed}:documents:1"))

    def _requests(self, rng: random.Random) -> list[ChatRequest]:
        context = {"method": self.method, **self.template.provenance()}
        return [
            ChatRequest(
                ({"role": "user", "content": self.template.render(document=cut(text, self.config.max_chars))},),
                self.sampling,
                seed=rng.randrange(2**31),
                context=context,
            )
            for _, text in self.documents
        ]

    def round(self, round_number: int, send: Callable[[list[ChatRequest]], list[ChatResponse]]) -> RoundResult:
        result = RoundResult()
        for reason, n in self.skipped.items():
            if n:
                result.rejected[reason] = n
        answers = send(self._requests(random.Random(f"{self.seed}:documents:{round_number}")))
        produce_documents = self.config.produce == "documents"
        for (doc_id, text), answer in zip(self.documents, answers):
            if produce_documents and self.config.keep_source:
                result.records.append({"id": doc_id, "text": text, "domain": self.config.source_domain})
                result.sources += 1
            result.candidates += 1
            problem = f"request_{answer.error}" if answer.error else response_problem(answer.text or "")
            if problem:
                result.reject(problem)
                continue
            provenance = {
                "instruction": None,
                "parents": [doc_id],
                "round": round_number,
                "completion_tokens": answer.completion_tokens,
            }
            if produce_documents:
                rewritten = _PREAMBLE.sub("", answer.text).strip()
                if len(_WORD.findall(rewritten)) < self.config.min_words:
                    result.reject("too_short")
                    continue
                result.records.append({"id": f"documents-{doc_id}", "text": rewritten, **provenance})
                continue
            pairs = qa_pairs(answer.text)
            if not pairs:
                result.reject("no_qa_pairs")
                continue
            for n, (question, reply) in enumerate(pairs):
                result.records.append(
                    {
                        "id": f"documents-{doc_id}-q{n}",
                        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": reply}],
                        **provenance,
                        "completion_tokens": answer.completion_tokens if n == 0 else 0,
                    }
                )
        self.remember(result.records)
        return result
