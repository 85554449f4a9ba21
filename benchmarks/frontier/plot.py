"""``frontier.png``: verified accuracy against budget, one panel per regime."""
from __future__ import annotations

from pathlib import Path


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("frontier", "wall-clock budget per problem (s), search batch "
               f"{report['search_batch']}; x = capped at N samples")]
    if report.get("batch_stop_frontier"):
        panels.append(("batch_stop_frontier", "mean cost per problem (s), verify-and-stop in the search run"))
    if report.get("latency_frontier"):
        panels.append(("latency_frontier", "latency budget (s), one problem at a time"))
    if report.get("stop_frontier"):
        panels.append(("stop_frontier", "mean latency budget (s), verify-and-stop, one problem at a time"))
    cols = min(len(panels), 2)  # two panels a row: the many-problem regimes above, one problem at a time below
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 4.5 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (key, xlabel) in zip(axes.flat, panels):
        for name in report["models"]:
            pts = [p for p in report[key] if p["k"][name] > 0]
            style = "--" if report["models"][name]["role"] == "ar" else "-"
            line, = ax.plot([p["budget_s"] for p in pts], [p["accuracy"][name] for p in pts], style, marker="o",
                            markersize=3, label=name)
            capped = [p for p in pts if p["capped"][name]]
            ax.plot([p["budget_s"] for p in capped], [p["accuracy"][name] for p in capped], "x",
                    color=line.get_color(), markersize=6)
        cascades = report.get({"batch_stop_frontier": "batch_cascade_frontier", "stop_frontier": "cascade_frontier"}
                              .get(key, ""))
        if cascades:  # the verify-and-stop panels: the best cascade (student, then AR) at each mean budget
            pts = [(p["budget_s"], max(p["accuracy"].values())) for p in cascades if max(p["k"].values()) > 0]
            ax.plot([b for b, _ in pts], [a for _, a in pts], ":", color="black", marker="s", markersize=3,
                    label="best cascade: student, then AR")
        families = report.get({"batch_stop_frontier": "batch_family_frontier", "stop_frontier": "family_frontier"}
                              .get(key, ""))
        for side, style, label in (("student", "-.", "students' best cascade"), ("ar", (0, (1, 3)), "AR's best cascade")):
            pts = [(p["budget_s"], p["accuracy"]) for p in (families or {}).get(side, []) if p["k"] > 0]
            if pts:
                ax.plot([b for b, _ in pts], [a for _, a in pts], linestyle=style, color="grey", marker="^",
                        markersize=3, label=label)
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("verified accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{report['task']}: accuracy per second ({report['machine'][:70]})", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
