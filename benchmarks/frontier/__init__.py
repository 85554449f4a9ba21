"""The head-to-head frontier: diffusion teacher, SDTT students and the AR twin, in one run on one machine.

    python -m benchmarks.frontier --task sudoku \\
        --models sudoku4-teacher sudoku4-sdtt-4 sudoku4-sdtt-2 sudoku4-ar \\
        --problems 100 --samples 64 --batches 1 8 64 256 --out benchmarks/runs/<date>-sudoku-frontier

A model is a zoo name, a checkpoint directory or a hub model (``hf:<id or dir>``), optionally
with sampler overrides (``countdown-cd3-num-teacher:threshold=0.9,steps=12``) or an AR engine
(``sudoku4-ar:ar_backend=transformers``). Hub models record no task: ``--task countdown
--task-options n=3`` (``--task-path`` for GSM8K data) gives it, so hub diffusion and AR
models and zoo models of that task share one run. For every model:
  * samples/s and generated tokens/s at each batch size (same prompts for every model;
    a warm-up call, then the median of ``--repeats`` calls); generated tokens are the
    tokens of each completion up to and including EOS;
  * the share of sampling wall time spent inside the network's forward (the rest is
    sampler overhead: sampling, bookkeeping, generate's loop); "n/a" for vLLM, whose
    forward is out of reach;
  * FLOPs per generated token, counted by ``torch.utils.flop_counter`` (plus the CPU
    flash-attention kernel it does not know) over one generate call: diffusion = every
    step over the whole sequence; AR = prefill + cached decode steps (rows that ended
    early still cost their padded steps). For vLLM the same checkpoint is counted under
    transformers;
  * best-of-N search (``Search``, ``--samples`` per problem, ``--search-batch`` rows per
    call): pass@1, seconds per sample (wall time of the whole search incl. verifying,
    divided by the samples drawn), and the frontier: for a wall-clock budget of B seconds
    per problem a model affords k = floor(B / seconds per sample) samples and reaches the
    exact verified@k estimated from its N samples (k > N is capped at N and marked ``*``).
  * the latency regime (``--latency-problems``): one problem at a time, its k samples in
    one generate call (an interactive user waiting for an answer), k = 1, 2, 3, 4, 6, 8,
    ... N; a budget of B seconds affords the largest k whose measured latency (generate +
    verify, median over problems and rounds) is <= B. Few rows per call: here a model's
    number of sequential network calls counts, where the throughput regime counts FLOPs.
    With it, verify-and-stop (``Search.best_of_n(round_size=r)``): rounds of r samples of
    one problem until one verifies, at most K; its mean latency per problem is the timed
    latency of r samples times the expected rounds, from each problem's verified count
    (samples are i.i.d., so the drawn ones in random order are a fair stopping sequence),
    and its accuracy is verified@K. A mean budget B buys each model's best (r, K).
  * cascades (``cascade_pricing``, exact from the accuracy runs): each student then an AR
    engine for the problems it left unverified (reported apart: the AR twin is part of
    it), and each family's best cascade among its own models: a student then another
    student (e.g. the same one with a hotter head, ``head_tokens=3,head_temperature=1.3``
    in its spec), the AR engines among themselves, students against AR (one of the
    targets: no AR model is on the student side).
Then: student/teacher speed-ups side by side, the search targets, per budget whether
the best SDTT student + verifier or the best AR engine + verifier solves more (margins
with 95 % paired intervals over the problems), and the break-even table: how many times
the AR model's samples/s each student needs to match it at k samples (machine-free).
Writes ``<out>/frontier.json``, ``<out>/frontier.png`` and ``<out>/frontier.md`` (the
tables, naming the machine): each run keeps its own report; docs/results.md cites it. Only ratios within one run
are comparable.

Modules, one job each: ``models`` (a spec -> a loaded model, and what the report records
about it), ``measure`` (timings, FLOPs, the search run), ``budget`` (what a budget buys:
the frontier, latency, verify-and-stop and cascade points), ``compare`` (speed-ups,
verdicts, break-even, targets), ``analysis`` (all of that from a run's measurements),
``markdown`` (``frontier.md``), ``plot`` (``frontier.png``), ``store`` (``frontier.json``
and ``--accuracy-from``), ``cli`` (the command line).
"""
