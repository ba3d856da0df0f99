"""Experiments: verdict and aggregation logic on hand-made numbers, script configs, and tiny end-to-end runs of
scripts/run_bottleneck.py and scripts/run_claims.py on real Multi30k lines."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from nmt.errors import NMTError
from nmt.evaluation.experiment import load_script_config
from nmt.evaluation.verdicts import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    SUPPORTED,
    bottleneck_sentence,
    bottleneck_verdict,
    comparison_verdict,
    gap_growth,
    growth_verdict,
    mean_std,
    paired_mean_bootstrap,
)

REPO = Path(__file__).resolve().parents[1]


def growth(gap_short: float, gap_long: float, ci: tuple[float, float], p: float, baseline: float = 20.0) -> dict:
    """A hand-made `gap_growth` result: the baseline scores `baseline` BLEU on short and long sources."""
    return {"long_from": 20, "count_short": 800, "count_long": 200, "gap_short": gap_short, "gap_long": gap_long,
            "system_short": baseline + gap_short, "system_long": baseline + gap_long, "baseline_short": baseline,
            "baseline_long": baseline, "growth": gap_long - gap_short, "growth_ci": list(ci), "p_value": p}


# Verdicts on hand-made numbers -------------------------------------------------------------------------------
def test_growing_gap_supports_the_claim() -> None:
    assert growth_verdict(growth(1.0, 5.0, (2.1, 5.9), 0.001)) == SUPPORTED


def test_flat_gap_does_not_support_the_claim() -> None:
    # Attention is better everywhere, by the same amount: no bottleneck effect, and the interval is tight.
    assert growth_verdict(growth(3.0, 3.1, (-0.6, 0.8), 0.70)) == NOT_SUPPORTED
    # A gap that shrinks significantly contradicts the claim too.
    assert growth_verdict(growth(4.0, 1.0, (-4.5, -1.5), 0.002)) == NOT_SUPPORTED


def test_insignificant_growth_is_inconclusive() -> None:
    assert growth_verdict(growth(1.0, 3.0, (-1.5, 5.5), 0.30)) == INCONCLUSIVE
    # Systems too weak to translate anything: a flat, even a "significant", gap says nothing.
    assert growth_verdict(growth(0.1, 0.5, (0.2, 0.6), 0.01, baseline=0.2)) == INCONCLUSIVE
    assert growth_verdict(growth(0.0, 0.1, (-0.2, 0.3), 0.6, baseline=0.3)) == INCONCLUSIVE
    # No long sentences at all: nothing to compare.
    assert growth_verdict({"growth": None, "growth_ci": None, "p_value": None}) == INCONCLUSIVE


def test_seed_verdicts_must_agree() -> None:
    grows = [growth(1.0, 5.0, (2.0, 6.0), 0.001), growth(0.5, 4.0, (1.5, 5.5), 0.004)]
    v = bottleneck_verdict(grows)
    assert v["label"] == SUPPORTED and v["per_seed"] == [SUPPORTED, SUPPORTED]
    assert v["growth"]["mean"] == pytest.approx(3.75) and v["growth"]["n"] == 2
    sentence = bottleneck_sentence(v, grows, "corpus test")
    assert "+0.75 ± 0.35 on sources under 20 words and +4.50 ± 0.71 on sources of 20+ words" in sentence
    assert "changes by +3.75 ± 0.35 BLEU" in sentence
    mixed = bottleneck_verdict(grows + [growth(2.0, 2.1, (-0.5, 0.7), 0.8)])
    assert mixed["label"] == INCONCLUSIVE and mixed["per_seed"][-1] == NOT_SUPPORTED


def test_comparison_verdict_and_mean_std() -> None:
    assert comparison_verdict(2.0, 0.01) == SUPPORTED
    assert comparison_verdict(-2.0, 0.01) == NOT_SUPPORTED
    assert comparison_verdict(2.0, 0.2) == INCONCLUSIVE
    # Between near-zero scores a "significant" difference is not a result.
    assert comparison_verdict(0.01, 0.01, (0.02, 0.01), min_score=5.0) == INCONCLUSIVE
    assert comparison_verdict(1.5, 0.01, (21.5, 20.0), min_score=5.0) == SUPPORTED
    ms = mean_std([30.0, 32.0, None, 34.0])
    assert ms == {"mean": 32.0, "std": pytest.approx(2.0), "n": 3}
    assert mean_std([7.5])["std"] is None
    assert mean_std([None]) is None


def test_paired_mean_bootstrap_detects_a_shift_only_when_there_is_one() -> None:
    a = [1.0 + 0.01 * (i % 7) for i in range(200)]
    shifted = paired_mean_bootstrap([x + 0.5 for x in a], a, n_samples=200)
    assert shifted["difference"] == pytest.approx(0.5) and shifted["p_value"] < 0.05
    same = paired_mean_bootstrap(a, a, n_samples=200)
    assert same["difference"] == 0.0 and same["p_value"] == 1.0


def test_gap_growth_on_made_up_translations() -> None:
    # The system is perfect everywhere; the baseline is perfect on short sources and garbage on long ones.
    short = [f"ein kurzer satz nummer {i}" for i in range(30)]
    long_ = [" ".join(f"wort{j}" for j in range(25)) + f" {i}" for i in range(30)]
    refs = [f"a short sentence number {i} here" for i in range(30)] + [
        " ".join(f"word{j}" for j in range(25)) + f" {i}" for i in range(30)]
    base = refs[:30] + ["nothing right at all"] * 30
    g = gap_growth(short + long_, refs, base, refs, long_from=20, n_samples=200)
    assert (g["count_short"], g["count_long"]) == (30, 30)
    assert g["gap_short"] == pytest.approx(0.0) and g["gap_long"] > 90
    assert g["growth"] == pytest.approx(g["gap_long"] - g["gap_short"])
    assert g["growth_ci"][0] > 0 and g["p_value"] < 0.05
    assert growth_verdict(g) == SUPPORTED
    flat = gap_growth(short + long_, refs, refs, refs, long_from=20, n_samples=200)
    assert flat["growth"] == 0.0 and growth_verdict(flat) == NOT_SUPPORTED


# Script configs -----------------------------------------------------------------------------------------------
def test_presets_and_overrides() -> None:
    cfg, preset = load_script_config("bottleneck", ["preset=quick", "seeds=[1,2,3]", "data=[wmt_news_de_en]"])
    assert preset == "quick" and list(cfg.seeds) == [1, 2, 3] and list(cfg.data) == ["wmt_news_de_en"]
    assert cfg.model_fixed == "rnn_fixed_small" and cfg.workers == 2 and cfg.threads == 1
    full, _ = load_script_config("bottleneck", ["preset=full"])
    assert full.model_attention == "rnn_attention_base" and list(full.seeds) == [1, 2, 3]
    claims, _ = load_script_config("claims", ["preset=quick"])
    assert list(claims.d_k) == [32, 128, 512] and claims.model == "rnn_attention_small"
    # Dotted run keys go to every training run, after the preset's own overrides.
    cfg, _ = load_script_config("bottleneck", ["preset=quick", "train.max_steps=7", "+data.files.x=[a,b]"])
    assert list(cfg.overrides)[-2:] == ["train.max_steps=7", "+data.files.x=[a,b]"]
    assert cfg.overrides[0] == "train.max_steps=400"  # the preset's budget comes first
    with pytest.raises(NMTError, match="seedz"):
        load_script_config("bottleneck", ["preset=quick", "seedz=[1]"])
    with pytest.raises(NMTError, match="unknown preset=tiny.*quick"):
        load_script_config("claims", ["preset=tiny"])


def test_script_reports_a_bad_key_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bottleneck_script", REPO / "scripts" / "run_bottleneck.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with pytest.raises(SystemExit) as exit_info:
        script.main(["preset=quick", "workerz=3"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "workerz" in err and err.count("\n") == 1


# End to end on a tiny corpus ----------------------------------------------------------------------------------
def tiny_overrides(files: dict[str, list[str]], data_root: Path) -> list[str]:
    return [
        "data.name=tiny_experiment",
        f"data.root={data_root}",
        *(f"+data.files.{split}=[{src},{tgt}]" for split, (src, tgt) in files.items()),
        "data.tokenizer.vocab_size=250",
        "model.emb_dim=16",
        "model.hidden=16",
        "model.dropout=0.0",
        "train.device=cpu",
        "train.max_steps=5",
        "train.max_minutes=0",
        "train.batch_tokens=400",
        "train.lr=5e-3",
        "train.eval_every=5",
        "train.save_every=1000",
        "train.eval_max_sentences=10",
        "train.attention_samples=0",
        "train.resume=never",
        "decode.max_len_a=1.0",
        "decode.max_len_b=2",
    ]


def test_bottleneck_end_to_end(tiny_corpus_files: dict[str, list[str]], tmp_path: Path) -> None:
    from nmt.evaluation.bottleneck import run_bottleneck

    cfg, _ = load_script_config("bottleneck", [
        "data=[files]", "model_fixed=rnn_fixed_small", "model_attention=rnn_attention_small", "decode=greedy",
        "length_edges=[0,8,12,16]", "long_from=12", "bootstrap_samples=50", "workers=2", "threads=1",
        f"out_dir={tmp_path / 'out'}",
    ])
    cfg.overrides = tiny_overrides(tiny_corpus_files, tmp_path / "data")
    out = run_bottleneck(cfg, None, log=lambda _: None)  # two worker processes, as in the quick preset

    report = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    (section,) = report["sections"]
    n_test = len(Path(tiny_corpus_files["test"][1]).read_text().splitlines())
    assert section["num_sentences"] == n_test == 60
    (seed,) = section["seeds"]
    # Same budget for both; steps and parameter counts are reported.
    runs = {r["name"].split("/")[1]: r for r in report["runs"]}
    assert runs["rnn_fixed"]["steps"] == runs["rnn_attention"]["steps"] == 5
    assert runs["rnn_attention"]["num_parameters"] > runs["rnn_fixed"]["num_parameters"] > 0
    assert f"{runs['rnn_attention']['num_parameters']:,}" in md
    assert report["hardware"]["torch"] and report["hardware"]["workers"] == 2
    # Bucket counts add up to the test set, and agree between systems and the paired test.
    for name in ("rnn_fixed", "rnn_attention"):
        rows = seed["systems"][name]["by_length"]
        assert [r["label"] for r in rows] == ["0-8", "8-12", "12-16", "16+"]
        assert sum(r["count"] for r in rows) == n_test
    assert [r["count"] for r in seed["by_length"]] == [r["count"] for r in seed["systems"]["rnn_fixed"]["by_length"]]
    # The paired test's difference is the difference of the two reported scores.
    s = seed["systems"]
    assert seed["bleu"]["difference"] == pytest.approx(s["rnn_attention"]["bleu"] - s["rnn_fixed"]["bleu"])
    assert seed["chrf"]["difference"] == pytest.approx(s["rnn_attention"]["chrf"] - s["rnn_fixed"]["chrf"])
    for name in s:
        lo, hi = s[name]["bleu_ci"]
        assert lo <= hi
    # Growth: the reported gaps are BLEU differences on the two length groups, and the verdict follows them.
    g = seed["growth"]
    assert g["count_short"] + g["count_long"] == n_test and g["count_long"] > 0
    assert g["growth"] == pytest.approx(g["gap_long"] - g["gap_short"])
    assert seed["verdict"] == growth_verdict(g, cfg.flat_margin, cfg.min_bleu)
    assert section["verdict"]["label"] == seed["verdict"]
    assert f"**Verdict: {seed['verdict']}.**" in md and f"{g['growth']:+.2f}" in md
    # Plot and the per-seed evaluation report exist.
    assert (out / section["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    seed_dir = out / Path(seed["report"]).parent
    metrics = json.loads((seed_dir / "metrics.json").read_text())
    assert {x["name"] for x in metrics["systems"]} == {"rnn_fixed", "rnn_attention"}
    hyp = (seed_dir / "rnn_attention.hyp.txt").read_text().splitlines()
    assert len(hyp) == n_test
    assert metrics["systems"][0]["scores"]["bleu"] == pytest.approx(s["rnn_attention"]["bleu"])
    # Each run went through the trainer with the composed config: its run dir has the trainer's metrics.
    trained = json.loads((Path(runs["rnn_fixed"]["run_dir"]) / "metrics.json").read_text())
    assert trained["step"] == 5 and trained["arch"] == "rnn_fixed"
    # The worker's console output went to the run's console.log, not to the terminal.
    assert "run dir:" in (Path(runs["rnn_attention"]["run_dir"]) / "console.log").read_text()


def test_claims_end_to_end(tiny_corpus_files: dict[str, list[str]], tmp_path: Path) -> None:
    from nmt.evaluation.claims import run_claims

    cfg, _ = load_script_config("claims", [
        "data=files", "model=rnn_attention_small", "decode=greedy", "d_k=[8,32]", "temperatures=[0.5,1,2]",
        "scorers=[dot,scaled_dot,additive]", "heads=[1,2]", "probe_sentences=12", "bootstrap_samples=50",
        "workers=1", "threads=1",
        f"out_dir={tmp_path / 'out'}",
    ])
    cfg.overrides = tiny_overrides(tiny_corpus_files, tmp_path / "data")
    out = run_claims(cfg, None, log=lambda _: None)

    report = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    runs = {r["name"]: r for r in report["runs"]}
    # d_k=32 is the base model's own key size (2 x hidden 16): those runs are shared with the scorer runs.
    assert runs["d_k=32/dot"]["run_dir"] == runs["scorer=dot"]["run_dir"]
    assert runs["d_k=32/dot"]["trained_as"] == "scorer=dot"
    assert runs["heads=1"]["run_dir"] == runs["base"]["run_dir"] == runs["scorer=additive"]["run_dir"]
    assert runs["d_k=8/dot"]["model"]["hidden"] == 4 and runs["heads=2"]["model"]["heads"] == 2
    assert len({r["run_dir"] for r in report["runs"]}) == 6
    claims = report["claims"]
    assert set(claims) == {"scaling", "temperature", "hard", "scorers"}
    for name, claim in claims.items():
        assert claim["verdict"] in (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE), name
        assert f"**Verdict: {claim['verdict']}.**" in md

    scaling = claims["scaling"]
    assert [r["d_k"] for r in scaling["rows"]] == [8, 32]
    for row in scaling["rows"]:
        init = row["init"]
        # Same initial weights: unscaled scores are sqrt(d_k) times the scaled ones, so the unscaled softmax is
        # sharper (lower entropy, higher max weight).
        assert init["dot"]["entropy"] <= init["scaled_dot"]["entropy"] + 1e-6
        assert init["dot"]["max_weight"] >= init["scaled_dot"]["max_weight"] - 1e-6
        syn = row["synthetic"]
        assert syn["grad_change_pct"] == pytest.approx(
            100 * (syn["scaled_dot"]["grad_norm"] / syn["dot"]["grad_norm"] - 1))
        test = row["bleu"]["test"]
        assert test["difference"] == pytest.approx(row["bleu"]["scaled_dot"]["bleu"] - row["bleu"]["dot"]["bleu"])
    top = scaling["rows"][-1]
    bleu_test = top["bleu"]["test"]
    assert scaling["verdicts"]["bleu"] == comparison_verdict(
        bleu_test["difference"], bleu_test["p_value"], (bleu_test["system"], bleu_test["baseline"]), cfg.min_bleu)
    # Tiny models translate nothing: no BLEU comparison may claim a result.
    assert scaling["verdicts"]["bleu"] == INCONCLUSIVE and claims["hard"]["verdict"] == INCONCLUSIVE
    assert "up to 40%" in md and (out / scaling["plot"]).read_bytes()[:4] == b"\x89PNG"

    temp = claims["temperature"]
    assert [r["temperature"] for r in temp["rows"]] == [0.5, 1.0, 2.0]
    trained = next(r for r in temp["rows"] if r["temperature"] == 1.0)
    # At the trained temperature the decode is the training job's own: same BLEU as the base run.
    base_bleu = next(r for r in claims["scorers"]["rows"] if r["name"] == "scorer=additive")["bleu"]
    assert trained["bleu"] == pytest.approx(base_bleu)
    assert claims["hard"]["test"]["difference"] == pytest.approx(
        claims["hard"]["soft"]["bleu"] - claims["hard"]["hard"]["bleu"])
    scorers = claims["scorers"]
    assert [r["name"] for r in scorers["rows"]] == [
        "scorer=dot", "scorer=scaled_dot", "scorer=additive", "heads=1", "heads=2"]
    t = scorers["heads_test"]
    assert scorers["verdicts"]["more_heads"] == comparison_verdict(
        t["difference"], t["p_value"], (t["system"], t["baseline"]), cfg.min_bleu)
    assert next(r for r in scorers["rows"] if r["name"] == "heads=1")["vs_reference"] is None  # the same run


def test_scaled_and_unscaled_models_start_from_the_same_weights() -> None:
    import torch

    from nmt.config import ModelConfig
    from nmt.evaluation.claims import synthetic_probe
    from nmt.models import build_model

    states = []
    for scorer in ("dot", "scaled_dot"):
        torch.manual_seed(3)
        states.append(build_model(ModelConfig(scorer=scorer, emb_dim=8, hidden=8), 20, 20).state_dict())
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    # Unit-variance q, k: at d_k = 512 the unscaled softmax is nearly one-hot and its gradient tiny.
    dot, scaled = synthetic_probe(512, False, queries=200), synthetic_probe(512, True, queries=200)
    assert dot["max_weight"] > 0.9 > scaled["max_weight"]
    assert dot["grad_norm"] < 0.5 * scaled["grad_norm"]
