"""Every protocol (fidelity.protocols.PROTOCOLS) and every recipe (recipes/*.sh), setting by setting, against upstream's
values read from upstream's source, each with its repo, commit, file and line (tests/upstream/*.py:
SOURCES[run][field] = (value in our flag's units, "owner/repo@commit path:line", note)).

A setting that differs from upstream must be listed in DIFFERENCES with the reason (a deviation we keep, or one to
fix); an unlisted difference fails, and so does a listed one that no longer differs (the list stays true). Values
upstream has no flag of ours for (a grader described in words, stop token ids) count as differences and are listed.
"""

import dataclasses
from pathlib import Path

import pytest

from evaluate import PROTOCOL_FIELDS
from learn import ALGORITHMS
from fidelity.protocols import PROTOCOLS, apply
from test_recipes import RECIPES, needs_data, parse_recipe
from upstream import oat, simplerl_v0, simplerl_v1  # tests/upstream/, on the path as the tests' folder is

SOURCES = {run: fields for module in (simplerl_v0, simplerl_v1, oat) for run, fields in module.SOURCES.items()}

# (run, field) -> why ours differs. Runs: "<protocol>_protocol" or a recipe's stem.
DIFFERENCES = {
    # fidelity/protocols.py
    ("simplerl_zero_protocol", "grader"): "v0 grades with the Qwen harness's math_equal; ours is the layered grader",
    ("simplerl_zoo_protocol", "eval.grader"): "the Zoo's eval grades with the harness's math_equal; ours the protocol's",
    ("oat_zero_protocol", "grader"): "oat's math_grader (mathd | sympy | math_verify); ours the layered grader",
}
for recipe in ("oat_zero_7b", "oat_zero_1.5b"):
    DIFFERENCES.update({
        (recipe, "grader"): "oat's math_grader; ours the layered grader (docs/grader.md)",
        (recipe, "train_data"): "oat's file is rebuilt from the MATH release (../shared/data/README.md)",
        (recipe, "micro_batch_size"): "memory only: the loss is the same at any micro-batch size",
    })
DIFFERENCES.update({
    ("simplerl_zero_7b", "grader"): "v0 grades with the Qwen harness's math_equal; ours the layered grader",
    ("simplerl_zero_7b", "steps"): "166 rollout batches is v0's schedule horizon; its published model is step 120 "
        "(the recipe's header: evaluate checkpoints/step_000120)",
    ("simplerl_zero_7b", "vllm_max_model_len"): "ours 4,096 leaves room; v0 sizes it 1,024 + 3,000",
})

def protocol_value(name: str, field: str):
    """The value train_zero.py (a field) or evaluate.py --protocol (an "eval." field) resolves from the protocol:
    evaluate.py takes EvalProtocol's fields, and PROTOCOL_FIELDS from the protocol's training fields."""
    protocol = PROTOCOLS[name]
    if field.startswith("eval."):
        key = field[5:]
        if hasattr(protocol.eval, key):
            return getattr(protocol.eval, key)
        return getattr(protocol, key) if key in PROTOCOL_FIELDS else None
    return getattr(protocol, field, None)


def recipe_values(path: Path) -> dict:
    cfg, _, _ = parse_recipe(path)
    cfg = apply(cfg, cfg.protocol)
    values = dataclasses.asdict(cfg)
    if values["loss_agg"] == "algo":  # the algorithm's own aggregation (learn.ALGORITHMS)
        values["loss_agg"] = ALGORITHMS[cfg.algo].aggregation
    return values


def recipe_sources(stem: str) -> dict:
    return {**SOURCES["zoo_common"], **SOURCES[stem]} if stem.startswith("zoo_") else SOURCES.get(stem, {})


def same(ours, upstream) -> bool:
    if isinstance(ours, (list, tuple)) and isinstance(upstream, (list, tuple)):
        return len(ours) == len(upstream) and all(same(a, b) for a, b in zip(ours, upstream))
    if isinstance(ours, float) or isinstance(upstream, float):
        return isinstance(ours, (int, float)) and isinstance(upstream, (int, float)) and abs(ours - upstream) <= 1e-12
    return ours == upstream


def differences(run: str, ours: dict, sources: dict) -> tuple[list, list]:
    """(unlisted differences, listed entries that no longer differ) of one run."""
    unlisted, stale = [], []
    for field, (value, source, _) in sources.items():
        if field not in ours:
            continue  # upstream facts with no setting of ours (prompt length, reward normalisation): notes only
        differs = not same(ours[field], value)
        if differs and (run, field) not in DIFFERENCES:
            unlisted.append(f"{run}.{field}: ours {ours[field]!r}, upstream {value!r} ({source})")
        if not differs and (run, field) in DIFFERENCES:
            stale.append(f"{run}.{field}: now equals upstream {value!r}; remove it from DIFFERENCES")
    return unlisted, stale


def test_every_source_names_a_commit_a_file_and_a_line():
    for run, fields in SOURCES.items():
        for field, (_, source, note) in fields.items():
            repo, _, where = source.partition(" ")
            assert "@" in repo and ":" in where and where.rsplit(":", 1)[1].split(",")[0].split("-")[0].isdigit(), \
                (run, field, source)
            assert note, (run, field)


@pytest.mark.parametrize("name", ["simplerl_zero", "simplerl_zoo", "oat_zero"])
def test_protocol_matches_upstream_or_lists_why(name):
    sources = SOURCES[f"{name}_protocol"]
    ours = {field: protocol_value(name, field) for field in sources}
    ours = {field: value for field, value in ours.items() if value is not None or field.startswith("eval.")}
    assert differences(f"{name}_protocol", ours, sources) == ([], [])


@needs_data
@pytest.mark.parametrize("path", [p for p in RECIPES if p.stem != "simplerl_7b"], ids=lambda p: p.stem)
def test_recipe_matches_upstream_or_lists_why(path):
    sources = recipe_sources(path.stem)
    assert sources, f"{path.stem}: no upstream table in tests/upstream/"
    ours = recipe_values(path)
    ours["train_data"] = Path(ours["train_data"]).stem if "/" in ours["train_data"] else ours["train_data"]
    ours["stop"], ours["stop_token_ids"] = tuple(ours["stop"]), tuple(ours["stop_token_ids"])
    assert differences(path.stem, ours, sources) == ([], [])


def test_every_listed_difference_names_a_run_and_a_field_upstream_has():
    for run, field in DIFFERENCES:
        sources = recipe_sources(run) if run in {p.stem for p in RECIPES} else SOURCES[run]
        assert field in sources, (run, field)
