"""Garbage checkpoints (random bytes, truncated files, zip archives with the wrong members) are refused with the
one-line "not a readable checkpoint" error, never a traceback: in the loader, and through every command that
loads one (nmt-evaluate, nmt-translate, nmt-average, nmt-train train.resume=)."""

from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path

import pytest
import torch
from console import finish, one_error_line, start_script
from omegaconf import OmegaConf

from nmt.config import Config
from nmt.errors import NMTError
from nmt.training.checkpoint import load_checkpoint, save_checkpoint

SEED = 21


def real_checkpoint() -> bytes:
    """The bytes of a small but well-formed checkpoint."""
    buffer = io.BytesIO()
    payload = {"format": "nmt-checkpoint", "version": 1, "config": {"model": {"arch": "transformer"}},
               "model": {"w": torch.arange(64.0), "b": torch.ones(8)}, "tokenizer": {"src": b"\x00" * 50}, "step": 7}
    torch.save(payload, buffer)
    return buffer.getvalue()


def zip_with(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buffer.getvalue()


def garbage(rng: random.Random) -> list[bytes]:
    """Several hundred unreadable files: random bytes, pickle-looking bytes, prefixes of a real checkpoint, and
    zip archives whose members are missing, misnamed or random."""
    def noise(n: int) -> bytes:
        return bytes(rng.getrandbits(8) for _ in range(n))

    real = real_checkpoint()
    samples = [noise(rng.randint(0, 3000)) for _ in range(200)]
    samples += [b"\x80" + bytes([rng.randint(2, 5)]) + noise(rng.randint(0, 60)) for _ in range(60)]
    samples += [real[:cut] for cut in sorted(rng.sample(range(len(real)), 120))]
    names = ["data.pkl", "archive/data.pkl", "archive/version", "archive/data/0", "archive/byteorder", "x/data.pkl"]
    samples += [zip_with({name: noise(rng.randint(0, 200)) for name in rng.sample(names, rng.randint(0, 3))})
                for _ in range(40)]
    return samples


def corrupted_members(rng: random.Random) -> list[bytes]:
    """The real archive with one member left out, or replaced by noise (of its own length, or shorter): some
    still load (an optional member, a tensor's storage with other values); the rest must be refused."""
    with zipfile.ZipFile(io.BytesIO(real_checkpoint())) as z:
        members = {name: z.read(name) for name in z.namelist()}
    samples = [zip_with({k: v for k, v in members.items() if k != name}) for name in members]
    return samples + [zip_with({**members, name: bytes(rng.getrandbits(8) for _ in range(size))})
                      for name in members for size in (len(members[name]), len(members[name]) // 2)]


def test_the_loader_refuses_hundreds_of_garbage_files_in_one_line(tmp_path):
    samples = garbage(random.Random(SEED))
    assert len(samples) >= 400
    path = tmp_path / "garbage.pt"
    for i, data in enumerate(samples):
        path.write_bytes(data)
        with pytest.raises(NMTError) as e:
            load_checkpoint(path)
        message = str(e.value)
        assert "\n" not in message and str(path) in message, f"sample {i}: {message!r}"
        assert any(why in message for why in ("not a readable checkpoint", "not an nmt checkpoint",
                                              "not a safe checkpoint")), f"sample {i}: {message}"


def test_corrupted_members_load_or_are_refused_in_one_line(tmp_path):
    path = tmp_path / "corrupted.pt"
    refused = 0
    for i, data in enumerate(corrupted_members(random.Random(SEED))):
        path.write_bytes(data)
        try:
            load_checkpoint(path)
        except NMTError as e:
            refused += 1
            assert "\n" not in str(e) and str(path) in str(e), f"sample {i}: {e}"
    assert refused > 0


def test_a_pickle_of_the_wrong_shape_is_refused_in_one_line(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save({"format": "nmt-checkpoint", "version": 1, "config": "x", "model": {}, "tokenizer": {}, "step": 1},
               path)
    with pytest.raises(NMTError, match=r"not a readable checkpoint \(its 'config' is a str\)"):
        load_checkpoint(path)


@pytest.fixture(scope="module")
def garbage_files(tmp_path_factory) -> list[Path]:
    """Three garbage checkpoints on disk: random bytes, a truncated checkpoint, a zip with a wrong member."""
    root = tmp_path_factory.mktemp("garbage")
    rng = random.Random(SEED)
    real = real_checkpoint()
    contents = [bytes(rng.getrandbits(8) for _ in range(1000)), real[: len(real) // 2],
                zip_with({"archive/data.pkl": b"\x80\x02garbage"})]
    paths = []
    for i, data in enumerate(contents):
        paths.append(root / f"garbage{i}.pt")
        paths[-1].write_bytes(data)
    return paths


def _commands(path: Path, tmp_path: Path) -> list[tuple[str, list[str]]]:
    good = tmp_path / "good.pt"
    if not good.exists():
        config = OmegaConf.to_container(OmegaConf.structured(Config()))  # a valid config: only the weights are odd
        save_checkpoint(good, {"config": config, "model": {"w": torch.ones(2)}, "tokenizer": {}, "step": 1})
    return [
        ("nmt-evaluate", [f"checkpoints=[{path}]", "device=cpu"]),
        ("nmt-translate", [f"checkpoint={path}", "device=cpu"]),
        ("nmt-average", [str(good), str(path), "--output", str(tmp_path / "avg.pt")]),
        ("nmt-train", [f"train.resume={path}", "train.device=cpu", f"hydra.run.dir={tmp_path / 'run'}"]),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("which", [0, 1, 2])
def test_every_command_refuses_garbage_in_one_line(garbage_files, which, tmp_path):
    path = garbage_files[which]
    started = [(script, start_script(script, args, cwd=tmp_path)) for script, args in _commands(path, tmp_path)]
    for script, proc in started:  # side by side: most of each run is the interpreter starting
        line = one_error_line(finish(proc, stdin=b"Ein Hund.\n", timeout=120))
        assert "not a readable checkpoint" in line and str(path) in line, f"{script}: {line}"
    assert not (tmp_path / "avg.pt").exists()
