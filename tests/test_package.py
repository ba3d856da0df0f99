"""Model packages (nmt/training/package.py): made by nmt-export format=package from a real tiny run, read in a
fresh process started elsewhere, checked against their manifest, served from a cache laid out as the Hugging
Face hub lays it out, and pushed up to the upload call."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from console import one_error_line, run_script

from nmt.errors import NMTError
from nmt.training.checkpoint import Checkpoint
from nmt.training.package import (
    CARD,
    CONFIG,
    MANIFEST,
    WEIGHTS,
    fetch_package,
    push_package,
    read_package,
    verify_package,
)


@pytest.fixture(scope="module")
def package(tiny_run, tmp_path_factory) -> Path:
    """tiny_run's best.pt as a package, with the scores of an evaluation in its card."""
    work = tmp_path_factory.mktemp("package")
    evaluation = work / "metrics.json"
    signature = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2"
    evaluation.write_text(json.dumps({"split": "test", "systems": [{"name": "rnn_attention", "scores": {
        "bleu": 1.25, "chrf": 20.5, "signatures": {"bleu": signature}}}]}))
    result = run_script("nmt-export", ["format=package", f"checkpoint={tiny_run.run_dir}", f"out={work / 'pkg'}",
                                       f"evaluations=[{evaluation}]"], cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "packaged" in result.stdout
    return work / "pkg"


def test_a_package_holds_weights_config_tokenizer_card_and_manifest(package, tiny_run):
    names = sorted(p.name for p in package.iterdir())
    assert names == sorted([WEIGHTS, CONFIG, CARD, MANIFEST, "spm.model"])  # tiny_run has a joint vocabulary
    manifest = json.loads((package / MANIFEST).read_text())
    assert set(manifest["sha256"]) == set(names) - {MANIFEST}
    assert manifest["sha256"][WEIGHTS] == hashlib.sha256((package / WEIGHTS).read_bytes()).hexdigest()
    best = tiny_run.run_dir / "best.pt"
    checkpoint = Checkpoint.load(best)
    # Weights only, each table once, in fp32: no optimizer moments (best.pt holds three times as many numbers).
    assert (package / WEIGHTS).stat().st_size < 4 * checkpoint.num_parameters + 4096
    card = (package / CARD).read_text()
    assert f"{checkpoint.num_parameters:,} parameters" in card and "rnn_attention" in card
    assert "| test | rnn_attention | 1.25 | 20.50 | `nrefs:1|" in card and "pip install nmt-bottleneck" in card
    # The tied embedding tables are stored once and named as aliases.
    config = json.loads((package / CONFIG).read_text())
    assert config["tied"] and config["step"] == checkpoint.step


def test_a_package_reads_back_as_its_checkpoint(package, tiny_run):
    checkpoint = Checkpoint.load(tiny_run.run_dir / "best.pt")
    again = Checkpoint.from_payload(read_package(package))
    assert set(again.model) == set(checkpoint.model)
    assert all(again.model[k].equal(checkpoint.model[k]) for k in checkpoint.model)
    assert again.tokenizer == checkpoint.tokenizer and again.config == checkpoint.config
    assert again.optimizer is None and again.step == checkpoint.step


def test_a_package_translates_and_scores_as_its_checkpoint_in_a_fresh_process(package, tiny_run, tmp_path):
    """nmt-translate and nmt-score from another directory: the same output and the same log-probabilities."""
    src, ref = tiny_run.files["test"]
    outputs = {}
    for name, model in (("checkpoint", tiny_run.run_dir / "best.pt"), ("package", package)):
        translated = run_script("nmt-translate", [f"checkpoint={model}", f"input={src}", f"output={name}.txt",
                                                  "device=cpu"], cwd=tmp_path)
        assert translated.returncode == 0, translated.stderr[-3000:]
        scored = run_script("nmt-score", [f"checkpoint={model}", f"src_file={src}", f"ref_file={ref}",
                                          f"out={name}.tsv", "device=cpu"], cwd=tmp_path)
        assert scored.returncode == 0, scored.stderr[-3000:]
        outputs[name] = ((tmp_path / f"{name}.txt").read_text(), (tmp_path / f"{name}.tsv").read_text())
    assert outputs["package"] == outputs["checkpoint"] and outputs["package"][0].strip()


@pytest.mark.parametrize("damage, message", [
    ("change", "model.safetensors does not match its sha256"),
    ("remove", "spm.model is missing"),
    ("add", "extra.txt is not in manifest.json"),
    ("manifest", "is not an nmt package manifest"),
])
def test_a_damaged_package_is_refused_in_one_line(package, tiny_run, tmp_path, damage, message):
    broken = tmp_path / "pkg"
    shutil.copytree(package, broken)
    if damage == "change":
        data = bytearray((broken / WEIGHTS).read_bytes())
        data[-1] ^= 1
        (broken / WEIGHTS).write_bytes(bytes(data))
    elif damage == "remove":
        (broken / "spm.model").unlink()
    elif damage == "add":
        (broken / "extra.txt").write_text("x")
    else:
        (broken / MANIFEST).write_text("{not json")
    src, _ = tiny_run.files["test"]
    line = one_error_line(run_script("nmt-translate", [f"checkpoint={broken}", f"input={src}", "device=cpu"],
                                     cwd=tmp_path))
    assert message in line, line


def hub_cache(package: Path, cache: Path, repo_id: str, revision: str = "a" * 40) -> None:
    """`package` laid out as huggingface_hub caches a model repository: blobs by hash, a snapshot of links to them
    under the commit, refs/main naming the commit (and a .gitattributes, as a new hub repository has)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    files = {p.name: p.read_bytes() for p in package.iterdir()} | {".gitattributes": b"*.safetensors filter=lfs\n"}
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)


def test_a_package_is_served_offline_from_a_hub_layout_cache(package, tiny_run, tmp_path, monkeypatch):
    from nmt import Translator

    cache = tmp_path / "hub"
    hub_cache(package, cache, "nmt-test/tiny-de-en")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    local = fetch_package("nmt-test/tiny-de-en")
    assert verify_package(local)["step"] == read_package(package)["step"]
    src, _ = tiny_run.files["test"]
    lines = Path(src).read_text().splitlines()[:5]
    expected = Translator.from_checkpoint(package, device="cpu").translate(lines)
    assert Translator.from_pretrained("nmt-test/tiny-de-en", device="cpu").translate(lines) == expected
    result = run_script("nmt-translate", ["checkpoint=hf:nmt-test/tiny-de-en", f"input={src}", "output=out.txt",
                                          "device=cpu"], cwd=tmp_path,
                        env={"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    with pytest.raises(NMTError, match="cannot fetch the package nmt-test/missing from the hub .HF_HUB_OFFLINE=1"):
        fetch_package("nmt-test/missing")


def test_push_uploads_the_package_in_one_commit_naming_the_run(package, monkeypatch):
    """Everything up to the upload call: no machine here has a hub token or the network."""
    import huggingface_hub

    calls = []

    class FakeApi:
        def create_repo(self, repo_id, repo_type, exist_ok):
            calls.append(("create", repo_id, repo_type, exist_ok))

        def upload_folder(self, folder_path, repo_id, repo_type, commit_message):
            calls.append(("upload", folder_path, repo_id, repo_type, commit_message))
            return type("Info", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = push_package(package, "nmt-test/tiny-de-en", "nmt model package of run/best.pt (step 30)")
    assert url == "https://huggingface.co/nmt-test/tiny-de-en/commit/abc"
    assert calls == [("create", "nmt-test/tiny-de-en", "model", True),
                     ("upload", str(package), "nmt-test/tiny-de-en", "model",
                      "nmt model package of run/best.pt (step 30)")]


def test_a_transformer_package_can_carry_its_ctranslate2_conversion(tiny_transformer_run, tmp_path):
    pytest.importorskip("ctranslate2")
    result = run_script("nmt-export", ["format=package", "ct2=true", f"checkpoint={tiny_transformer_run.run_dir}",
                                       f"out={tmp_path / 'pkg'}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((tmp_path / "pkg" / MANIFEST).read_text())["sha256"]
    assert "ct2/model.bin" in manifest and WEIGHTS in manifest
    verify_package(tmp_path / "pkg")


def test_package_options_belong_to_format_package(tiny_run, tmp_path):
    line = one_error_line(run_script("nmt-export", [f"checkpoint={tiny_run.run_dir}", f"out={tmp_path / 'x'}",
                                                    "push_to=org/name"], cwd=tmp_path))
    assert "evaluations, ct2 and push_to belong to format=package" in line
    line = one_error_line(run_script("nmt-export", ["format=package", f"checkpoint={tiny_run.run_dir}",
                                                    f"out={tmp_path / 'y'}", "evaluations=[nope.json]"],
                                     cwd=tmp_path))
    assert "evaluation report nope.json" in line and not (tmp_path / "y").exists()
