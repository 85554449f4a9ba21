"""Tasks for sdtt-search: problems, prompts, targets and answer checkers.

One interface for every task (see :class:`tasks.base.Task`)::

    from tasks import load_task, available_tasks
    task = load_task("countdown", n=3)   # also "gsm8k", "sudoku", "wordproblems", aliases "cd3", "sudoku4"
    task.problems(split="test", limit=None)
    task.format_prompt(problem); task.format_target(problem)
    task.extract_answer(text); task.is_correct(problem, text); task.verify(problem, text)
    task.train_examples(seed)

Model output is untrusted: every reader is bounded and never raises, and no
model text reaches ``eval``/``exec``/``sympify``. This package never imports torch.
"""

from pathlib import Path

from .base import Problem, Task
from .countdown import CountdownTask
from .errors import TaskError
from .gsm8k import GSM8KTask
from .registry import available_tasks, load_task, task_aliases
from .sudoku import SudokuTask
from .wordproblems import WordProblemsTask

#: the public test files shipped in ``tasks/data`` (see its README for source and licence)
PUBLIC_TEST_SETS = {
    "countdown-cd3": str(Path(__file__).parent / "data" / "d1" / "countdown_cd3_test.jsonl"),
    "sudoku-4x4": str(Path(__file__).parent / "data" / "d1" / "4x4_test_sudoku.csv"),
}

__all__ = [
    "CountdownTask",
    "GSM8KTask",
    "PUBLIC_TEST_SETS",
    "Problem",
    "SudokuTask",
    "Task",
    "TaskError",
    "available_tasks",
    "load_task",
    "task_aliases",
    "WordProblemsTask",
]
