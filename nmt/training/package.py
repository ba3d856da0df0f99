"""A model package: a trained model to share, without what only training needs.

    nmt-export format=package checkpoint=outputs/<run dir> out=packages/de-en evaluations=[<metrics.json>,...]
    Translator.from_pretrained("packages/de-en")          # or a hub id: "org/name" (huggingface_hub)
    nmt-translate checkpoint=packages/de-en ...            # every command that takes a checkpoint takes a package

A package directory holds:
- model.safetensors: the weights only (a table shared by several names, tied embeddings, is stored once; config.json
  names the aliases), about a third of a best.pt, which also carries the optimizer's two moments;
- config.json: {"format": "nmt-package", "version", "config" (the run's resolved config), "step",
  "num_parameters", "tied" (alias -> stored name), "tokenizer" (its settings and which SentencePiece files)};
- spm.model (a joint vocabulary) or spm.src.model and spm.tgt.model: the SentencePiece models;
- README.md: the model card (architecture, size, data and its terms, budget, seed, the scores of the evaluations
  given, with their sacreBLEU signatures, intended use, licence);
- manifest.json: the sha256 of every other file. A package is read only when every file is there and matches:
  a missing or changed file is one line naming it.

Read back as a checkpoint payload (without optimizer; `Checkpoint.from_payload` reads it), so loading a package is
loading a checkpoint (nmt.training.checkpoint.load_model). This module works on payloads, the dicts
`Checkpoint.to_payload` gives, so that nmt/training/checkpoint.py can use it without a cycle. From the hub,
`fetch_package` downloads a snapshot through huggingface_hub (served from its cache with HF_HUB_OFFLINE=1);
`push_package` uploads a package directory.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from nmt.data.sources import file_fingerprint
from nmt.errors import NMTError
from nmt.io import read_json, write_json, write_text
from nmt.runtime import StateDict
from nmt.training.state import TrainState

FORMAT = "nmt-package"
VERSION = 1
WEIGHTS, CONFIG, MANIFEST, CARD = "model.safetensors", "config.json", "manifest.json", "README.md"
PROJECT = "nmt-bottleneck"  # the distribution name (pip install nmt-bottleneck); the import name is nmt
PROJECT_LICENCE = "MIT"
UNKNOWN_TERMS = "not recorded in the data config: check the corpus source before any use"


def is_package(path: str | Path) -> bool:
    """A directory that holds a package's manifest and config."""
    path = Path(path)
    return path.is_dir() and (path / MANIFEST).is_file() and (path / CONFIG).is_file()


def _files(directory: Path) -> list[str]:
    """The package's files under `directory`, as relative POSIX paths; hidden ones (.gitattributes that a hub
    repository starts with, a .cache/ of the hub client) are not part of it."""
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts))


def _spm_files(joint: bool) -> dict[str, str]:
    """Tokenizer state key -> file name."""
    return {"src_model": "spm.model"} if joint else {"src_model": "spm.src.model", "tgt_model": "spm.tgt.model"}


def _untie(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The state with every tensor stored once (safetensors refuses shared memory) and alias -> stored name."""
    stored: dict[str, Tensor] = {}
    tied: dict[str, str] = {}
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
    for name, tensor in state.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in seen:
            tied[name] = seen[key]
        else:
            seen[key] = name
            stored[name] = tensor.detach().contiguous()
    return stored, tied


# Writing ---------------------------------------------------------------------------------------------------------
def write_package(payload: StateDict, out: str | Path, card: str,
                  extra: Callable[[Path], None] | None = None) -> Path:
    """Write the model of a checkpoint `payload` (`Checkpoint.to_payload()`) as a package into the new directory
    `out` (staged beside it and renamed into place: an interrupted write leaves nothing that looks like a
    package). `card`: the README.md text. `extra` writes more into the staged directory before the manifest is
    made (e.g. a CTranslate2 conversion in ct2/)."""
    from safetensors.torch import save_file

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise NMTError(f"{out} already exists and is not empty; a package is never overwritten")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        weights, tied = _untie(payload["model"])
        save_file(weights, str(staging / WEIGHTS), metadata={"format": FORMAT})
        tok = payload["tokenizer"]
        files = _spm_files(bool(tok["joint"]))
        for key, name in files.items():
            (staging / name).write_bytes(tok[key])
        write_json(staging / CONFIG, {
            "format": FORMAT, "version": VERSION, "config": payload["config"], "step": payload["step"],
            "num_parameters": payload["num_parameters"], "tied": tied,
            "tokenizer": {"state": {k: v for k, v in tok.items() if not isinstance(v, bytes)}, "files": files}})
        write_text(staging / CARD, card)
        if extra is not None:
            extra(staging)
        write_json(staging / MANIFEST, {"format": FORMAT, "sha256": {name: file_fingerprint(staging / name)
                                                                      for name in _files(staging)}})
        for p in [staging, *staging.rglob("*")]:  # mkdtemp (and the weights' writer) make them private
            p.chmod(0o755 if p.is_dir() else 0o644)
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


# Reading ---------------------------------------------------------------------------------------------------------
def verify_package(path: str | Path) -> dict[str, Any]:
    """The package's config.json after checking its manifest: every file named is there with its sha256, and no
    file is missing from the manifest. NMTError naming the first problem."""
    path = Path(path)
    try:
        manifest = read_json(path / MANIFEST)
        hashes = manifest["sha256"]
        if manifest.get("format") != FORMAT or not isinstance(hashes, dict):
            raise KeyError("format")
    except (NMTError, KeyError, TypeError):
        raise NMTError(f"{path / MANIFEST} is not an nmt package manifest") from None
    for name in (WEIGHTS, CONFIG):
        if name not in hashes:
            raise NMTError(f"{path}: the manifest does not list {name}")
    for name, expected in hashes.items():
        file = path / name
        if not file.is_file():
            raise NMTError(f"{path}: {name} is missing (the manifest lists it)")
        if file_fingerprint(file) != expected:
            raise NMTError(f"{path}: {name} does not match its sha256 in {MANIFEST} (changed or damaged)")
    unlisted = sorted(name for name in _files(path) if name != MANIFEST and name not in hashes)
    if unlisted:
        raise NMTError(f"{path}: {unlisted[0]} is not in {MANIFEST} (a file added to the package)")
    config = read_json(path / CONFIG)
    if config.get("format") != FORMAT or config.get("version") != VERSION:
        raise NMTError(f"{path / CONFIG}: not an nmt package of version {VERSION}")
    return config


def read_package(path: str | Path) -> StateDict:
    """The package at `path` as a checkpoint payload (weights, config, tokenizer, step; no optimizer), after
    `verify_package`."""
    from safetensors.torch import load_file

    path = Path(path)
    config = verify_package(path)
    try:
        state = load_file(str(path / WEIGHTS))
        for alias, name in config["tied"].items():
            state[alias] = state[name]
        tokenizer: StateDict = dict(config["tokenizer"]["state"])
        for key, name in config["tokenizer"]["files"].items():
            tokenizer[key] = (path / name).read_bytes()
        return {"config": config["config"], "model": state, "tokenizer": tokenizer, "step": int(config["step"]),
                "train_state": TrainState(step=int(config["step"])).state_dict(),
                "num_parameters": config.get("num_parameters")}
    except (KeyError, TypeError, ValueError, OSError) as e:
        raise NMTError(f"{path}: not a readable nmt package ({type(e).__name__}: {e})") from None


# The hub -----------------------------------------------------------------------------------------------------------
def fetch_package(repo_id: str, revision: str | None = None) -> Path:
    """A package on the Hugging Face hub as a local directory (huggingface_hub.snapshot_download: cached; with
    HF_HUB_OFFLINE=1 served from the cache only). `revision`: a branch, tag or commit to pin."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    try:  # the environment as it is now (huggingface_hub reads it once, at its import)
        return Path(snapshot_download(repo_id=repo_id, revision=revision, repo_type="model",
                                      cache_dir=os.environ.get("HF_HUB_CACHE") or None, local_files_only=offline))
    except HFValidationError as e:
        raise NMTError(f"{repo_id!r} is neither a package directory nor a hub id ({str(e).splitlines()[0]})") from None
    except Exception as e:  # network errors, a repository or revision that is not there, an empty offline cache
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        where = " (HF_HUB_OFFLINE=1: only the local cache is used)" if offline else ""
        raise NMTError(f"cannot fetch the package {repo_id}{'@' + revision if revision else ''} from the hub"
                       f"{where}: {reason}") from None


def push_package(package: str | Path, repo_id: str, message: str) -> str:
    """Upload a package directory to the hub repository `repo_id` (created when missing) in one commit with
    `message`; needs a token (huggingface-cli login or HF_TOKEN) and the network. Returns the commit's URL."""
    from huggingface_hub import HfApi

    verify_package(package)
    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="model", exist_ok=True)
        info = api.upload_folder(folder_path=str(package), repo_id=repo_id, repo_type="model", commit_message=message)
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NMTError(f"cannot push {package} to the hub as {repo_id}: {reason}") from None
    return str(getattr(info, "commit_url", info))


# The model card ----------------------------------------------------------------------------------------------------
def model_card(payload: StateDict, source: str, evaluations: Sequence[dict[str, Any]]) -> str:
    """README.md of a package made from the checkpoint `payload`: what the model is, how it was trained, how it
    scored, what it is for.

    evaluations: nmt-evaluate reports (metrics.json as read), each giving this model's scores on a test set."""
    cfg = payload["config"]
    data, model, train = cfg["data"], cfg["model"], cfg["train"]
    state = TrainState()
    state.load_state_dict(payload["train_state"])
    langs = f"{data['src_lang']}-{data['tgt_lang']}"
    lines = [
        "---", f"language: [{data['src_lang']}, {data['tgt_lang']}]", "tags: [translation, nmt]",
        f"license: {PROJECT_LICENCE.lower()}", "---", "",
        f"# {model['arch']} {langs}, trained on {data['name']}", "",
        f"A translation model ({model['arch']}, {data['src_lang']} -> {data['tgt_lang']}) trained with "
        f"[{PROJECT}](https://pypi.org/project/{PROJECT}/) (`pip install {PROJECT}`, imported as `nmt`).", "",
        "```python", "from nmt import Translator",
        "translator = Translator.from_pretrained(\"<this directory or hub id>\")",
        "translator.translate([\"...\"])", "```", "",
        "## Model", "",
        f"- architecture: {model['arch']}; {payload['num_parameters'] or 0:,} parameters; options: "
        + ", ".join(f"{k}={v}" for k, v in model.items() if k != "arch"),
        f"- tokenizer: SentencePiece {data['tokenizer']['model_type']}, {data['tokenizer']['vocab_size']} pieces"
        + (" (joint)" if data["tokenizer"].get("joint", True) else " per side"),
        f"- decoding defaults: {', '.join(f'{k}={v}' for k, v in cfg['decode'].items())}", "",
        "## Training", "",
        f"- data: {data['name']} ({data['source']}); terms: {data.get('terms') or UNKNOWN_TERMS}",
        f"- budget: {state.step:,} updates of {train['batch_tokens']:,} tokens (max_steps={train['max_steps']}, "
        f"max_minutes={train['max_minutes']}, max_epochs={train['max_epochs']}); {state.train_seconds / 60:.1f} "
        f"minutes of training; optimizer {train['optimizer']}, lr {train['lr']}, schedule {train['schedule']}",
        f"- seed: {train['seed']}; device setting: {train['device']}",
        f"- made from: `{source}` (step {state.step}"
        + ("" if state.best_bleu is None else f", best valid BLEU {state.best_bleu:.2f} at step {state.best_step}")
        + ")", "",
        "## Evaluation", "",
    ]
    rows = []
    for report in evaluations:
        for system in report.get("systems", []):
            scores = system.get("scores", {})
            sig = scores.get("signatures", {})
            rows.append(f"| {report.get('split', '-')} | {system.get('name', '-')} | {scores.get('bleu', 0):.2f} | "
                        f"{scores.get('chrf', 0):.2f} | `{sig.get('bleu', '-')}` |")
    if rows:
        lines += ["| test set | system | BLEU | chrF | BLEU signature |", "|---|---|---|---|---|", *rows, ""]
    else:
        lines += ["No evaluation was given when this package was made (nmt-export ... evaluations=[metrics.json]).",
                  ""]
    lines += ["## Intended use", "",
              f"Research and teaching: translating {langs} text of the training data's domain, and comparing models. "
              f"Not evaluated for other domains, for safety-critical use, or for fairness across groups of speakers.",
              "", "## Licence", "",
              f"The code that trained it: {PROJECT_LICENCE}. The weights derive from the training data: its terms "
              f"(above) apply.", ""]
    return "\n".join(lines)


def size_of(path: str | Path) -> int:
    """Bytes of a file, or of every file in a directory."""
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def evaluation_reports(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """nmt-evaluate's metrics.json files, read."""
    reports = []
    for p in paths:
        try:
            reports.append(json.loads(Path(p).read_text(encoding="utf-8")))
        except (OSError, ValueError) as e:
            raise NMTError(f"evaluation report {p}: not readable JSON ({e})") from None
    return reports


