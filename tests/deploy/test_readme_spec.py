"""The README's job spec reference is a valid spec, names every option, and shows each
option's default."""

import re
import typing

from pydantic import BaseModel

from pipeline.config import JobSpec, load_job_spec
from tests.helpers import REPO

README = REPO / "README.md"


def _reference_block() -> str:
    text = README.read_text()
    section = text[text.index("## The job spec") :]
    return re.search(r"```yaml\n(.*?)```", section, re.S).group(1)


def _models(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _option_names(model: type[BaseModel], seen: set) -> set[str]:
    names = set()
    for name, field in model.model_fields.items():
        names.add(field.alias or name)
        for sub in _models(field.annotation):
            if sub not in seen:
                seen.add(sub)
                names |= _option_names(sub, seen)
    return names


def test_reference_spec_is_valid():
    import yaml

    spec = load_job_spec(yaml.safe_load(_reference_block()), check_files=False)
    assert spec.name == "quickstart"


def test_reference_spec_names_every_option():
    block = _reference_block()
    missing = sorted(name for name in _option_names(JobSpec, set()) if not re.search(rf"\b{name}\b", block))
    assert not missing, f"options not in the README's job spec reference: {missing}"


def test_reference_spec_shows_the_defaults():
    """Apart from the four required keys, the block's values are the code's defaults, so the
    reference cannot drift from JobSpec. Mutation that fails it: change any default (e.g.
    InputConfig.batch_rows to 2048)."""
    import yaml

    block = yaml.safe_load(_reference_block())
    required = {
        "name": block["name"],
        "input": {"uri": block["input"]["uri"]},
        "output": {"uri": block["output"]["uri"]},
        "stages": {"tokenize": {"model": block["stages"]["tokenize"]["model"]}},
    }
    shown = load_job_spec(block, check_files=False).model_dump(mode="json")
    defaults = load_job_spec(required, check_files=False).model_dump(mode="json")
    differences = [path for path in _paths(shown) if _get(shown, path) != _get(defaults, path)]
    assert not differences, f"the README shows values other than the defaults at {differences}"


def _paths(tree, prefix=()):
    if isinstance(tree, dict) and tree:
        for key, value in tree.items():
            yield from _paths(value, (*prefix, key))
    else:
        yield prefix


def _get(tree, path):
    for key in path:
        tree = tree[key]
    return tree
