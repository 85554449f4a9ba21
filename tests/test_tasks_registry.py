"""tasks registry, one-line errors, jsonl errors and the no-torch rule."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tasks
from tasks import TaskError, available_tasks, load_task
from tasks.countdown import CountdownTask
from tasks.jsonl import read_jsonl
from tasks.sudoku import SudokuTask

REPO = Path(__file__).resolve().parents[1]


def _data_dir() -> Path:
    env = os.environ.get("SDTT_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data" / "gsm8k"


def test_available_tasks():
    assert available_tasks() == ["countdown", "gsm8k", "sudoku", "wordproblems"]


def test_unknown_task_lists_available():
    with pytest.raises(ValueError) as exc:
        load_task("foo")
    assert str(exc.value) == "unknown task 'foo'; available: countdown, gsm8k, sudoku, wordproblems"
    assert isinstance(exc.value, TaskError)


@pytest.mark.parametrize(
    "name,cls,attr,value",
    [
        ("cd3", CountdownTask, "n", 3),
        ("CD4", CountdownTask, "n", 4),
        ("countdown5", CountdownTask, "n", 5),
        ("sudoku4", SudokuTask, "size", 4),
        ("sudoku6", SudokuTask, "size", 6),
        ("sudoku9", SudokuTask, "size", 9),
    ],
)
def test_aliases(name, cls, attr, value):
    task = load_task(name)
    assert isinstance(task, cls) and getattr(task, attr) == value and task.options[attr] == value


def test_options_and_errors_are_one_line():
    assert load_task("countdown", n=3).n == 3
    with pytest.raises(TaskError, match=r"unknown option 'bogus' for task 'countdown'; valid: n, "):
        load_task("countdown", bogus=1)
    with pytest.raises(TaskError, match="means n=3"):
        load_task("cd3", n=4)
    for bad in (dict(n=1), dict(n=7), dict(n="3"), dict(min_target=50, max_target=10)):
        with pytest.raises(TaskError) as exc:
            load_task("countdown", **bad)
        assert "\n" not in str(exc.value)
    with pytest.raises(TaskError, match="size must be 4, 6 or 9"):
        load_task("sudoku", size=5)
    with pytest.raises(TaskError, match="givens"):
        load_task("sudoku", size=4, givens=2)
    with pytest.raises(TaskError, match="unknown split 'dev'"):
        load_task("cd3").problems("dev")


def test_task_interface_attributes():
    for name in available_tasks():
        opts = {"path": _data_dir()} if name == "gsm8k" else {}
        task = load_task(name, **opts)
        assert task.name == name
        assert isinstance(task.options, dict)
        assert task.has_verifier == (name not in ("gsm8k", "wordproblems"))
        assert name in repr(task).lower().replace("gsm8ktask", "gsm8k").replace("countdowntask", "countdown").replace("sudokutask", "sudoku")


def test_missing_dataset_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SDTT_DATA_DIR", str(tmp_path))
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a, **k: None)
    with pytest.raises(TaskError) as exc:
        load_task("gsm8k")
    msg = str(exc.value)
    assert "\n" not in msg
    assert str(tmp_path) in msg and "path=" in msg and "SDTT_DATA_DIR" in msg and "datasets" in msg
    with pytest.raises(TaskError) as exc:
        load_task("gsm8k", path=tmp_path / "nowhere")
    assert "nowhere" in str(exc.value) and "path=" in str(exc.value) and "\n" not in str(exc.value)


def test_gsm8k_data_dir_layouts(tmp_path, monkeypatch):
    (tmp_path / "gsm8k").mkdir()
    line = '{"question": "1+1?", "answer": "1+1=<<1+1=2>>2\\n#### 2"}\n'
    (tmp_path / "gsm8k" / "test.jsonl").write_text(line)
    monkeypatch.setenv("SDTT_DATA_DIR", str(tmp_path))
    task = load_task("gsm8k")
    (p,) = task.problems("test")
    assert p.id == "gsm8k-test-0000" and p.reference == "2"
    assert task.format_target(p) == "1+1=2\n#### 2"
    assert load_task("gsm8k", calculator_annotations=True).format_target(p) == "1+1=<<1+1=2>>2\n#### 2"
    with pytest.raises(TaskError, match="no train split"):
        task.problems("train")


def test_malformed_jsonl_reports_file_and_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"input": "1,2,3", "output": "1+2=3"}\n\n{"input": "1,2,3", oops\n')
    with pytest.raises(TaskError) as exc:
        list(read_jsonl(f))
    assert f"{f}:3: malformed jsonl" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(TaskError, match=re.escape(f"{f}:3:")):
        load_task("countdown", n=2, path=f).problems("test")
    g = tmp_path / "list.jsonl"
    g.write_text('{"input": "1,2,3", "output": "1+2=3"}\n[1, 2]\n')
    with pytest.raises(TaskError, match=re.escape(f"{g}:2: malformed jsonl: expected an object")):
        list(read_jsonl(g))
    h = tmp_path / "nokey.jsonl"
    h.write_text('{"input": "1,2,3"}\n')
    with pytest.raises(TaskError, match=re.escape(f"{h}:1: malformed jsonl: missing string key 'output'")):
        load_task("countdown", n=2, path=h).problems("test")
    k = tmp_path / "gsm"
    k.mkdir()
    (k / "test.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n{"question": 1}\n')
    with pytest.raises(TaskError, match=re.escape(f"{k / 'test.jsonl'}:2:")):
        load_task("gsm8k", path=k).problems("test")
    b = tmp_path / "bin.jsonl"
    b.write_bytes(b'{"input": "1,2,3", "output": "1+2=3"}\n\xff\xfe\n')
    with pytest.raises(TaskError, match=re.escape(f"{b}:2: malformed jsonl")):
        list(read_jsonl(b))


def test_no_torch_import_after_loading_every_task():
    code = (
        "import sys, tasks\n"
        f"data = {str(_data_dir())!r}\n"
        "for name in tasks.available_tasks():\n"
        "    t = tasks.load_task(name, **({'path': data} if name == 'gsm8k' else {}))\n"
        "    p = t.problems('test', limit=2)[0]\n"
        "    t.is_correct(p, t.format_target(p)); t.verify(p, 'x')\n"
        "t = tasks.load_task('gsm8k', path=data)\n"
        "assert t.is_correct(t.problems('test', limit=1)[0], r'\\boxed{\\frac{36}{2}}')\n"
        "assert 'torch' not in sys.modules, 'tasks imported torch'\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_no_eval_in_sources():
    """No eval/exec/compile call and no sympify/parse_expr anywhere in tasks/."""
    import ast

    for f in Path(tasks.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in {"eval", "exec", "compile", "__import__"}, (f.name, node.lineno)
            if isinstance(node, (ast.Name, ast.Attribute, ast.alias)):
                ident = getattr(node, "id", None) or getattr(node, "attr", None) or getattr(node, "name", "")
                assert not any(bad in ident for bad in ("sympify", "parse_expr")), (f.name, ident)
