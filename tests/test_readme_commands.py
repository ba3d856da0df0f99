"""Every nmt-* command line in README.md's bash blocks runs as written, through the installed console scripts.

The README is read when the test runs. Each line runs through `bash -c` in a fresh directory, so quoting, pipes
and redirections are the shell's (operators such as | and > stand apart as words). Only the cost changes:
training and corpus commands get tiny-run overrides appended (a 300-pair slice of Multi30k, a 200-piece
vocabulary, a model of a few thousand parameters, 4 steps), the placeholders are filled in (README_PLACEHOLDERS
below), and files a command reads (input=news.de) are written first. A run directory the README names but no
earlier README line trains is trained tiny first, with `nmt-train data=<data> model=<arch>`.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from console import TIMEOUT, run_script

README = Path(__file__).resolve().parents[1] / "README.md"

# Placeholders a README command may use, and what they stand for.
README_PLACEHOLDERS = {
    "outputs/<data>/<arch>/<time>": "a run directory of nmt-train data=<data> model=<arch> (<data> may be ...)",
    "<run>": "the latest run directory (of any model), like outputs/multi30k_de_en/rnn_attention/<time>",
}
RUN_DIR = re.compile(r"outputs/(?P<data>[\w.-]+)/(?P<arch>\w+)/<time>")
# Commands a test cannot run as written (hours of training, or the speed benchmark); their own tests run them on
# tiny presets (tests/test_experiment.py, tests/test_benchmark.py).
NOT_RUN = {"nmt-bottleneck", "nmt-claims", "nmt-bench"}
OPERATORS = set("|&;<>()")


def tiny_data(files: dict[str, list[str]], root: Path) -> list[str]:
    """Overrides that swap any data preset's corpus for the tiny files (its name, hence its paths, kept)."""
    return ["data.source=files", f"data.root={root}", "data.tokenizer.vocab_size=200",
            *(f"++data.files.{split}=[{src},{tgt}]" for split, (src, tgt) in files.items())]


TINY_MODEL_AND_TRAINING = [  # sizes every architecture has; a tiny budget with one validation (so best.pt exists)
    "model.hidden=32", "train.device=cpu", "train.cpu_threads=1", "train.batch_tokens=300",
    "train.max_minutes=0", "train.max_steps=4", "train.eval_every=4", "train.eval_max_sentences=8",
    "train.save_every=1000", "train.attention_samples=0", "decode.max_len_a=1.0", "decode.max_len_b=2",
]


def readme_command_lines(text: str) -> list[str]:
    """The lines of ```bash blocks that run an nmt-* script (continuation lines joined)."""
    lines = []
    for block in re.findall(r"```(?:bash|sh|shell|console)\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if re.search(r"(^|[|;&]\s*)nmt-[\w-]+", line):
                lines.append(line)
    return lines


class Workspace:
    """The directory the README commands run in, with the tiny corpus and the runs they train."""

    def __init__(self, root: Path, files: dict[str, list[str]]):
        self.root, self.files = root, files
        self.inputs: dict[Path, bytes] = {}  # the input files written for the commands: none may change
        self.data = tiny_data(files, root / "data_cache")

    def extra_args(self, command: list[str]) -> list[str]:
        script = command[0]
        if script == "nmt-train":  # tiny embeddings for the RNNs (a Transformer's have size hidden)
            transformer = any(w.startswith(("model=transformer", "recipe=transformer")) for w in command)
            return self.data + ([] if transformer else ["model.emb_dim=16"]) + TINY_MODEL_AND_TRAINING
        if script == "nmt-prepare":
            return self.data
        return []

    def run_dir(self, data: str = "...", arch: str = "*") -> str:
        """outputs/<data>/<arch>/<time> of the latest such run (any data for ..., any model for *), trained tiny
        first (Multi30k, rnn_attention by default) when there is none."""
        pattern = f"outputs/{'*' if data == '...' else data}/{arch}/*/"
        if not list(self.root.glob(pattern)):
            self.shell(f"nmt-train data={'multi30k_de_en' if data == '...' else data} "
                       f"model={'rnn_attention' if arch == '*' else arch}")
        runs = sorted(self.root.glob(pattern), key=lambda p: p.stat().st_mtime)
        assert runs, f"no run directory {pattern} after training one"
        return str(runs[-1].relative_to(self.root))

    def fill_in(self, word: str) -> str:
        """`word` with README_PLACEHOLDERS replaced (an unknown placeholder fails the test, naming it)."""
        word = RUN_DIR.sub(lambda m: self.run_dir(m["data"], m["arch"]), word)
        if "<run>" in word:
            word = word.replace("<run>", self.run_dir())
        unknown = re.findall(r"<[\w.-](?:[\w .-]*[\w.-])?>", word)
        assert not unknown, f"README placeholder {unknown} is not one of {list(README_PLACEHOLDERS)}"
        return word

    def write_inputs(self, words: list[str]) -> None:
        """Files the command reads (input=, src_file=, ref_file=): a few test lines of the right language."""
        for word in words:
            key, _, path = word.partition("=")
            if key in ("input", "src_file", "ref_file") and path not in ("", "-") and not (self.root / path).exists():
                side = 1 if key == "ref_file" else 0
                lines = Path(self.files["test"][side]).read_text(encoding="utf-8").splitlines()[:5]
                (self.root / path).parent.mkdir(parents=True, exist_ok=True)
                (self.root / path).write_text("\n".join(lines) + "\n", encoding="utf-8")
                self.inputs[self.root / path] = (self.root / path).read_bytes()

    def command(self, line: str) -> str:
        """`line` with tiny-run arguments appended to each nmt-* command and the placeholders filled in."""
        segments: list[list[str]] = [[]]
        for word in shlex.split(line, comments=True):  # operators are words of their own in the README's lines
            word = self.fill_in(word)
            if set(word) <= OPERATORS:
                segments += [[word], []]
            else:
                segments[-1].append(word)
        out = []
        for segment in segments:
            if segment and segment[0].startswith("nmt-"):
                segment = segment + self.extra_args(segment)
                self.write_inputs(segment)
            out.append(" ".join(segment) if segment and set(segment[0]) <= OPERATORS else shlex.join(segment))
        return " ".join(s for s in out if s).removesuffix(" &")  # a background job (`... &`) is waited for

    def shell(self, line: str) -> None:
        command = self.command(line)
        result = run_script("bash", ["-c", command], cwd=self.root, timeout=TIMEOUT)
        assert result.returncode == 0, f"README: {line}\nran: {command}\n{result.stderr[-3000:]}"
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        changed = [str(p) for p, data in self.inputs.items() if not p.is_file() or p.read_bytes() != data]
        assert not changed, f"README: {line}\nchanged an input a command reads: {changed}"


@pytest.mark.slow
def test_every_readme_command_runs_as_written(tiny_corpus_files, tmp_path):
    lines = [line for line in readme_command_lines(README.read_text(encoding="utf-8"))
             if not any(re.search(rf"(^|\s){name}(\s|$)", line) for name in NOT_RUN)]
    assert lines, "README.md shows no nmt-* command in a bash block"
    workspace = Workspace(tmp_path, tiny_corpus_files)
    for line in lines:
        workspace.shell(line)


def test_readme_lines_are_found_and_filled_in(tmp_path):
    """The parsing above, on a made-up README (fast; the real one runs in the slow test)."""
    text = "```bash\nmake train\nnmt-train model=rnn_fixed   # baseline\necho 'Ein Hund.' | nmt-translate \\\n" \
           "    checkpoint=outputs/x/rnn_fixed/<time> decode=greedy &\n```\n```python\nnmt-train\n```\n"
    lines = readme_command_lines(text)
    assert lines == ["nmt-train model=rnn_fixed   # baseline",
                     "echo 'Ein Hund.' | nmt-translate      checkpoint=outputs/x/rnn_fixed/<time> decode=greedy &"]
    run = tmp_path / "outputs" / "x" / "rnn_fixed" / "2026-01-01_00-00-00"
    run.mkdir(parents=True)
    workspace = Workspace(tmp_path, {"test": ["t.de", "t.en"]})
    assert workspace.command(lines[0]).startswith("nmt-train model=rnn_fixed data.source=files")
    assert workspace.command(lines[1]) == \
        "echo 'Ein Hund.' | nmt-translate checkpoint=outputs/x/rnn_fixed/2026-01-01_00-00-00 decode=greedy"
