"""fidelity.protocols.PROTOCOLS: every upstream's row names valid settings, --protocol applies them where a flag keeps its
default (a flag given its own value wins), config.json / summary.json record the resolved values, and the stop
strings reach the engine."""

import json
from pathlib import Path
from dataclasses import asdict, fields
from typing import get_args, get_type_hints

import pytest

import evaluate
from fidelity import protocols
import train_zero
from evaluate import EvalConfig, benchmark_columns
from config import GraderSettings, ProtocolSettings
from learn import ALGORITHMS
from losses import AGGREGATIONS
from fidelity.protocols import PROTOCOLS, apply
from reward import EXTRACTIONS, RULES, TEMPLATES
from rundir import parse
from test_train import tiny_config


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_every_protocol_names_valid_settings(name):
    p = PROTOCOLS[name]
    assert p.template in (*TEMPLATES, "auto") and p.extraction in EXTRACTIONS and p.reward in RULES
    assert p.grader in get_args(get_type_hints(GraderSettings)["grader"])
    assert p.algo in ALGORITHMS and p.loss_agg in (*AGGREGATIONS, "algo")
    assert benchmark_columns(p.eval.benchmarks)  # the evaluation group resolves to its columns
    cfg = train_zero.resolve_auto(apply(train_zero.Config(), name))
    assert train_zero.config_problems(cfg, 1) == []
    assert evaluate.config_problems(apply(EvalConfig(), name, evaluate.PROTOCOL_FIELDS, eval_fields=True)) == []


def test_a_protocol_fills_the_defaults_and_an_explicit_flag_wins():
    zoo = apply(train_zero.Config(), "simplerl_zoo")
    assert (zoo.extraction, zoo.grader, zoo.reward, zoo.loss_agg, zoo.kl_clamp, zoo.grader_timeout) == \
        ("qwen_harness", "math_verify", "mix", "token_mean", 10.0, 10.0)
    assert zoo.stop == protocols.HARNESS_STOPS and zoo.algo == "grpo"
    mine = apply(train_zero.Config(loss_agg="seq_mean_token_mean", template="abel"), "simplerl_zoo")
    assert (mine.loss_agg, mine.template, mine.extraction) == ("seq_mean_token_mean", "abel", "qwen_harness")
    assert apply(train_zero.Config(), "") == train_zero.Config()  # no protocol: nothing changes
    ours = apply(train_zero.Config(), "ours")
    assert ours == train_zero.Config()  # "ours" is the defaults themselves
    cli = parse(train_zero.Config, ["--protocol", "oat_zero", "--template", "r1"])
    oat = apply(cli, cli.protocol)
    assert (oat.template, oat.reward, oat.truncated, oat.shuffle_minibatches) == ("r1", "correct", "zero_reward", True)


def test_an_unknown_protocol_is_one_line():
    assert "--protocol 'nosuch': use one of ours, simplerl_zero, simplerl_zoo, oat_zero" in \
        train_zero.config_problems(train_zero.resolve_auto(train_zero.Config(protocol="nosuch")), 1)


def test_docs_list_each_protocols_table():
    table = protocols.table()
    assert table.splitlines()[0] == "| setting | ours | simplerl_zero | simplerl_zoo | oat_zero |"
    assert "| extraction | boxed | harness_if_boxed | qwen_harness | boxed |" in table
    assert "| eval.extraction | boxed | qwen_harness | qwen_harness | boxed |" in table
    assert table in (Path(__file__).parents[1] / "docs" / "protocols.md").read_text()  # the docs cannot drift
    assert "docs/protocols.md" in ProtocolSettings.__doc__  # where --help points
    assert {f.name for f in fields(protocols.Protocol)} - {"source", "eval", "deviations"} == \
        set(protocols.TRAIN_FIELDS)


def test_config_json_records_what_the_protocol_resolved(tiny_model_dir, tmp_path, parity_reward):
    train_zero.main(tiny_config(tiny_model_dir, tmp_path, steps=1, eval_every=0, save_every=0, protocol="simplerl_zoo",
                                grader_workers=1))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["protocol"] == "simplerl_zoo" and config["extraction"] == "qwen_harness"
    assert config["grader"] == "math_verify" and config["loss_agg"] == "token_mean" and config["kl_clamp"] == 10.0
    assert config["stop"] == list(protocols.HARNESS_STOPS) and config["template"] == "qwen_boxed"


def test_rollouts_stop_at_the_template_and_protocol_strings(tiny_model_dir):
    """train_zero.rollout hands the engine the template's stop strings and --stop's."""
    seen = []

    class Recorder:
        def generate(self, prompts, params):
            seen.append(params.stop)
            return [[] for _ in prompts]

        def sleep(self):
            pass

    cfg = train_zero.resolve_auto(train_zero.Config(template="r1", stop=("\n\nQuestion:",)))
    train_zero.rollout(Recorder(), [], cfg, step=0, rank=0)
    assert seen == [["</answer>", "\n\nQuestion:"]]


def test_evaluate_resolves_a_papers_protocol(tiny_model_dir, tmp_path):
    """--protocol oat_zero: Oat's five columns, Minerva against any alternative; the flags given still win."""
    summary = evaluate.main(EvalConfig(protocol="oat_zero", model=tiny_model_dir, limit=1, max_new_tokens=4,
                                       engine="hf", grader_workers=1, out_dir=str(tmp_path / "eval")))
    assert [name for name in summary if name != "average"] == ["aime24_oat", "amc_oat", "math500", "minerva_math",
                                                                "olympiadbench"]
    config = json.loads((tmp_path / "eval" / "summary.json").read_text())["config"]
    assert (config["protocol"], config["minerva_gold"], config["max_new_tokens"], config["template"]) == \
        ("oat_zero", "alternatives", 4, "qwen_math")
    assert asdict(EvalConfig())["benchmarks"] == "math500,gsm8k"  # the class default is untouched


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_sft_takes_the_protocols_template_and_grader(name):
    import sft

    cfg = apply(sft.SFTConfig(), name, sft.sft_protocol_fields(name))
    assert sft.config_problems(cfg, 1) == []
    assert cfg.template == (PROTOCOLS[name].template if PROTOCOLS[name].template != "auto" else "qwen_boxed")
    assert cfg.grader == PROTOCOLS[name].grader
