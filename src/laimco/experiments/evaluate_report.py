"""Figures and Markdown of `laimco evaluate` (predicted against measured, per decision)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from scipy import stats


def _spearman(rows: Sequence[dict[str, Any]]) -> float | None:
    if len(rows) < 3:
        return None
    rho = stats.spearmanr([r["objective"] for r in rows], [r["loss"] for r in rows]).statistic
    return None if rho != rho else float(rho)  # NaN when a column is constant


def write_figures(rows: Sequence[dict[str, Any]], out: Path) -> list[str]:
    """latency.png/svg (predicted vs measured total latency, one point per decision) and
    objective_vs_loss.png/svg (objective vs measured loss, per mode, Spearman ρ in the title)."""
    written = []
    modes = sorted({r["mode"] for r in rows})
    fig, ax = plt.subplots(figsize=(6.5, 5))
    for mode, marker in zip(modes, "os^", strict=False):
        chosen = [r for r in rows if r["mode"] == mode]
        ax.scatter([1e3 * r["decision"]["latency_s"]["total"] for r in chosen],
                   [1e3 * r["measured"]["latency_s"]["total"] for r in chosen],
                   marker=marker, label=f"{mode} mode", alpha=0.75)
    if rows:
        top = 1e3 * max(max(r["decision"]["latency_s"]["total"],
                            r["measured"]["latency_s"]["total"]) for r in rows) * 1.05
        ax.plot([0, top], [0, top], "k--", lw=1, label="measured = predicted")
        ax.plot([0, top], [0, 1.1 * top], ":", color="grey", lw=1, label="+10 %")
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("emulated latency of the executed decision (ms)")
    ax.set_title("Latency: predicted vs executed, every strategy and scenario")
    ax.legend()
    ax.grid(alpha=0.3)
    for ext in ("png", "svg"):
        fig.savefig(out / f"latency.{ext}", dpi=130, bbox_inches="tight")
        written.append(f"latency.{ext}")
    plt.close(fig)

    fig, axes = plt.subplots(1, max(len(modes), 1), figsize=(6 * max(len(modes), 1), 4.8),
                             squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=False):
        chosen = [r for r in rows if r["mode"] == mode]
        for strategy in sorted({r["strategy"] for r in chosen}):
            pts = [r for r in chosen if r["strategy"] == strategy]
            ax.scatter([r["objective"] for r in pts], [r["loss"] for r in pts], label=strategy,
                       alpha=0.8)
        rho = _spearman(chosen)
        shown = "n/a" if rho is None else f"{rho:.3f}"
        ax.set_title(f"{mode} mode: Spearman ρ(objective, loss) = {shown}")
        ax.set_xlabel("objective (predicted distortion)")
        ax.set_ylabel("measured loss 1 − cosine (held-out mean)")
        ax.set_xscale("symlog", linthresh=1e-3)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ext in ("png", "svg"):
        fig.savefig(out / f"objective_vs_loss.{ext}", dpi=130, bbox_inches="tight")
        written.append(f"objective_vs_loss.{ext}")
    plt.close(fig)
    return written


def write_markdown(report: dict[str, Any], rows: Sequence[dict[str, Any]],
                   figures: Sequence[str]) -> str:
    lines = ["# Decisions applied to the real model: predicted vs measured", "",
             f"{report['held_out_sentences']} held-out sentences; a limit holds when the "
             f"measured use is at most {1 + report['limit_tolerance']:.2f}× the limit.", ""]
    for entry in report["scenarios"]:
        lines += [f"## {entry['scenario']} ({entry['mode']} mode)", "",
                  "| strategy | split | rules (dev/srv) | ρ_d | ρ_s | objective | loss (95 % CI) "
                  "| agree@10 | latency pred → meas (ms) | energy pred → meas (mJ) | holds |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for row in entry["strategies"]:
            d, m = row["decision"], row["measured"]
            if m is None:
                lines.append(f"| {row['strategy']} | — | — | — | — | — | infeasible | — | — "
                             "| — | — |")
                continue
            lo, hi = m["loss_ci95"]
            lines.append(
                f"| {row['strategy']} | {d['split']} | {d['rule_device'] or '—'}/"
                f"{d['rule_server'] or '—'} | {d['rho_device']:.3f} | {d['rho_server']:.3f} | "
                f"{d['objective']:.4g} | {m['loss_mean']:.4f} ({lo:.4f}–{hi:.4f}) | "
                f"{m['retrieval_at_10']:.3f} | {1e3 * d['latency_s']['total']:.1f} → "
                f"{1e3 * m['latency_s']['total']:.1f} | {1e3 * d['energy_j']['total']:.2f} → "
                f"{1e3 * m['energy_j']['total']:.2f} | {'yes' if m['limits_hold'] else 'NO'} |")
        lines.append("")
    agreement = report["rank_agreement"]
    lines += ["## Does the objective order decisions as measured quality does?", "",
              f"Pairs of decisions (same mode) whose objectives differ by more than 5 % and whose "
              f"paired losses differ by more than 3 standard errors: {agreement['pairs']}; the "
              f"objective orders {agreement['agreeing']} of them as measured.", ""]
    for mode in sorted({r["mode"] for r in rows}):
        rho = _spearman([r for r in rows if r["mode"] == mode])
        lines.append(f"- {mode} mode: Spearman ρ(objective, measured loss) = "
                     f"{'n/a' if rho is None else f'{rho:.3f}'} over "
                     f"{sum(r['mode'] == mode for r in rows)} decisions.")
    lines += ["", "## Targets, per mode", ""]
    for mode, targets in report["targets"].items():
        broken = targets["broken_by_more_than_10_percent"]
        lines += [f"### {mode} mode ({targets['decisions']} executed decisions)", "",
                  f"- worst |measured/predicted − 1| of total latency: "
                  f"{targets['worst_latency_relative_error']:.3f}; of energy: "
                  f"{targets['worst_energy_relative_error']:.3f} (target ≤ 0.10).",
                  f"- decisions reported feasible that break a limit by more than 10 % when "
                  f"executed: {len(broken)}" + (f" ({', '.join(broken)})" if broken else "") + "."]
        for scenario, gap in targets["joint_vs_best_measured"].items():
            lines.append(
                f"- {scenario}: joint " + ("meets" if gap["joint_holds_its_limits"] else
                                           "**breaks**") + " its limits; joint − best measured "
                f"feasible ({gap['best_strategy']}) = {gap['joint_minus_best_loss']:.5f} loss, "
                f"paired SE {gap['paired_se']:.5f} → within 3 SE: "
                f"{'yes' if gap['within_3_se'] else 'no'}.")
        lines.append("")
    lines += ["", "Figures: " + ", ".join(f"`{f}`" for f in figures), ""]
    return "\n".join(lines)
