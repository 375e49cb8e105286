"""Self-Instruct's pieces on their own: ROUGE-L as rouge_score computes it, the task-list
split, the paper's filters, the instance parser, seed files and prompt templates."""

from __future__ import annotations

import json
import random

import pytest

from pipeline.generation.config import SelfInstructConfig
from pipeline.generation.prompts import PromptTemplate, TemplateError
from pipeline.generation.rouge import SimilarityPool, lcs_length, rouge_l, rouge_tokens
from pipeline.generation.rounds import SeedTaskError, load_instructions
from pipeline.generation.self_instruct import TASKS_VARIABLES, instruction_problem, parse_instance, split_tasks
from tests.helpers import REPO

SHARED_SEEDS = REPO.parent / "shared" / "data" / "synthetic" / "self_instruct_seed_tasks.jsonl"


def _lcs_table(a: list[str], b: list[str]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def test_bit_parallel_lcs_equals_the_dynamic_programme():
    rng = random.Random(0)
    words = ["a", "b", "c", "d", "e", "f"]
    for _ in range(500):
        a = rng.choices(words, k=rng.randint(0, 70))  # past 64 tokens: more than one machine word
        b = rng.choices(words, k=rng.randint(0, 70))
        assert lcs_length(a, b) == _lcs_table(a, b)


def test_rouge_l_matches_rouge_score_on_known_pairs():
    # rouge_score's definition: LCS over its tokens, P = LCS / len(prediction), R = LCS / len(target), F1
    assert rouge_tokens("Write a Poem, about RIVERS!") == ["write", "a", "poem", "about", "rivers"]
    assert rouge_l("Write a poem about rivers.", "Write a short poem about the rivers.") == pytest.approx(
        2 * (5 / 7) * 1.0 / ((5 / 7) + 1.0)
    )
    assert rouge_l("the cat sat", "the cat sat") == 1.0
    assert rouge_l("the cat sat", "dogs run") == 0.0
    pool = SimilarityPool(["Write a poem about rivers.", "List three uses of salt."])
    assert pool.most_similar("Write a poem about the rivers.") == pytest.approx(
        rouge_l("Write a poem about rivers.", "Write a poem about the rivers.")
    )


def test_a_task_list_splits_and_drops_a_cut_off_last_task():
    text = "Name three rivers in Europe.\nTask 10: Explain how tides work.\nTask 11: Write a haiku ab"
    assert split_tasks(text, cut_short=False) == [
        "Name three rivers in Europe.",
        "Explain how tides work.",
        "Write a haiku ab",
    ]
    assert split_tasks(text, cut_short=True) == ["Name three rivers in Europe.", "Explain how tides work."]
    assert split_tasks("1. Sort these numbers.\n2. Translate to French.", cut_short=False) == [
        "Sort these numbers.",
        "Translate to French.",
    ]
    assert split_tasks("Write a story", cut_short=True) == []


def test_the_papers_filters_name_their_reasons():
    config = SelfInstructConfig(seed_tasks="unused")
    assert instruction_problem("Sort it.", config) == "too_short"
    assert instruction_problem(" ".join(["word"] * 151), config) == "too_long"
    assert instruction_problem("Draw a picture of a cat on a mat.", config) == "unusable_modality"
    assert instruction_problem("Describe what this image shows to you.", config) == "unusable_modality"
    assert instruction_problem("Explain why the sky is blue at noon.", config) is None
    assert instruction_problem("Explain the mapping between keys and values.", config) is None  # whole words only
    assert instruction_problem("- Explain why the sky is blue.", config) == "starts_with_punctuation"
    assert instruction_problem("Écris un poème sur la mer.", config) == "starts_non_ascii"


def test_instances_parse_or_are_rejected_by_reason():
    assert parse_instance("Input: 3, 1, 2\nOutput: 1, 2, 3") == ("3, 1, 2", "1, 2, 3")
    assert parse_instance("Output: Paris is the capital of France.") == ("", "Paris is the capital of France.")
    assert parse_instance("Input: x\nOutput: y\nTask: another one\nOutput: z") == ("x", "y")
    assert parse_instance("") == "empty_output"
    assert parse_instance("Input: something\nOutput:   ") == "empty_output"
    assert parse_instance("Paris is the capital.") == "no_output_field"
    assert parse_instance("Output: I'm sorry, but I cannot help with that.") == "refused"


def test_seed_files_load_and_bad_lines_are_named(tmp_path):
    good = {"id": "t1", "instruction": "Add the numbers.", "instances": [{"input": "1 2", "output": "3"}]}
    path = tmp_path / "seeds.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps({"id": "t2", "instruction": "No instances."}) + "\n")
    with pytest.raises(SeedTaskError, match=r"seeds.jsonl line 3: no 'instances'"):
        load_instructions(str(path), instances_required=True)
    assert [t.instruction for t in load_instructions(str(path))] == ["Add the numbers.", "No instances."]
    path.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(SeedTaskError, match=r"line 2: not JSON"):
        load_instructions(str(path), instances_required=True)
    path.write_text(json.dumps(good) + "\n")
    (task,) = load_instructions(str(path), instances_required=True)
    assert (task.id, task.instruction, task.input, task.output) == ("t1", "Add the numbers.", "1 2", "3")
    with pytest.raises(SeedTaskError, match="cannot read seed tasks"):
        load_instructions(str(tmp_path / "missing.jsonl"))


@pytest.mark.skipif(not SHARED_SEEDS.exists(), reason="../shared/data/synthetic is absent")
def test_the_papers_175_seed_tasks_load():
    tasks = load_instructions(str(SHARED_SEEDS), instances_required=True)
    assert len(tasks) == 175 and len({t.id for t in tasks}) == 175
    pool = SimilarityPool([t.instruction for t in tasks])
    assert pool.most_similar(tasks[0].instruction) == 1.0


def test_templates_render_strictly_and_name_unknown_variables(tmp_path):
    builtin = PromptTemplate.load("builtin:self_instruct_tasks", TASKS_VARIABLES)
    assert builtin.render(examples=["A.", "B."]) == "Come up with a series of tasks:\nTask 1: A.\nTask 2: B.\nTask 3:"
    assert len(builtin.sha256) == 64 and builtin.provenance()["template"] == "self_instruct_tasks"
    with pytest.raises(
        TemplateError, match="no built-in template 'nope'; built in: documents_describe_code, .*, self_instruct_tasks"
    ):
        PromptTemplate.load("builtin:nope", TASKS_VARIABLES)
    broken = tmp_path / "broken.jinja"
    broken.write_text("{% for x in examples %}{{ x }")
    with pytest.raises(TemplateError, match="template broken: line 1"):
        PromptTemplate.load(str(broken), TASKS_VARIABLES)
    sandboxed = tmp_path / "escape.jinja"
    sandboxed.write_text("{{ examples.__class__.__mro__ }}")
    with pytest.raises(TemplateError):
        PromptTemplate.load(str(sandboxed), TASKS_VARIABLES).render(examples=[])
