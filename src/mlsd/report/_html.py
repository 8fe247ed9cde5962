"""The run report: one self-contained HTML file (plots embedded, opens offline)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from jinja2 import Environment, PackageLoader, select_autoescape
from plotly.offline import get_plotlyjs

# every value is escaped (column names and messages come from user data); the
# plots and the pre-escaped JSON are marked safe where they are inserted
_env = Environment(loader=PackageLoader("mlsd.report", "templates"),
                   autoescape=select_autoescape(["html", "html.j2"]))


def _fig_html(fig: go.Figure, div_id: str) -> str:
    bars = [t for t in fig.data if getattr(t, "orientation", None) == "h"]
    rows = max((len(t.y) for t in bars), default=0)
    fig.update_layout(margin={"l": 50, "r": 20, "t": 40, "b": 40},
                      height=max(360, 110 + 17 * rows),
                      template="plotly_white", width=530,
                      legend={"orientation": "h", "y": -0.2})
    return pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def _pr_figure(curves: dict[str, Any], metrics: dict[str, Any]) -> go.Figure | None:
    pr = curves.get("model", {}).get("pr")
    if not pr:
        return None
    fig = go.Figure()
    ap = metrics["model"]["test"].get("pr_auc")
    fig.add_scatter(x=pr["recall"], y=pr["precision"], mode="lines",
                    name=f"model (PR-AUC {ap})")
    rule = curves.get("baselines", {}).get("one_feature", {}).get("pr")
    if rule:
        b = metrics["baselines"]["one_feature"]
        fig.add_scatter(x=rule["recall"], y=rule["precision"], mode="lines",
                        name=f"one-feature rule (PR-AUC {b['test'].get('pr_auc')})",
                        line={"dash": "dot"})
    test = metrics["model"]["test"]
    rate = test["positives"] / max(test["rows"], 1)
    fig.add_scatter(x=[0, 1], y=[rate, rate], mode="lines",
                    name=f"class prior ({rate:.3f})", line={"dash": "dash"})
    fig.update_layout(title="Precision-recall curve (test split)",
                      xaxis_title="recall", yaxis_title="precision",
                      yaxis_range=[0, 1.02], xaxis_range=[0, 1])
    return fig


def _label_pr_figure(curves: dict[str, Any], metrics: dict[str, Any],
                     labels: list) -> go.Figure | None:
    """Each label's precision-recall curve on test (the ten most frequent)."""
    pr = curves.get("model", {}).get("label_pr") or {}
    if not pr:
        return None
    per = {str(r["label"]): r for r in metrics["model"]["test"].get("per_label", [])}
    fig = go.Figure()
    shown = sorted(pr, key=lambda j: -per.get(str(labels[int(j)]), {}).get(
        "positives", 0))[:10]
    for j in shown:
        name = str(labels[int(j)])
        fig.add_scatter(x=pr[j]["recall"], y=pr[j]["precision"], mode="lines",
                        name=f"{name} (PR-AUC {per.get(name, {}).get('pr_auc')})")
    fig.update_layout(title="Precision-recall curve of each label (test split)",
                      xaxis_title="recall", yaxis_title="precision",
                      yaxis_range=[0, 1.02], xaxis_range=[0, 1])
    return fig


def _roc_figure(curves: dict[str, Any]) -> go.Figure | None:
    roc = curves.get("model", {}).get("roc")
    if not roc:
        return None
    fig = go.Figure()
    fig.add_scatter(x=roc["fpr"], y=roc["tpr"], mode="lines", name="model")
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance",
                    line={"dash": "dash"})
    fig.update_layout(title="ROC curve (test split)",
                      xaxis_title="false positive rate",
                      yaxis_title="true positive rate")
    return fig


def _confusion_figure(curves: dict[str, Any], classes: list) -> go.Figure | None:
    cm = curves.get("model", {}).get("confusion")
    if not cm:
        return None
    labels = [str(c) for c in classes]
    fig = go.Figure(go.Heatmap(z=cm, x=labels, y=labels, colorscale="Blues",
                               text=cm, texttemplate="%{text}", showscale=False))
    fig.update_layout(title="Confusion matrix (test, at the threshold)",
                      xaxis_title="predicted", yaxis_title="actual",
                      yaxis_autorange="reversed")
    return fig


def _bar(title: str, labels: list[str], values: list[float], xtitle: str,
         horizontal: bool = True) -> go.Figure:
    if horizontal:
        fig = go.Figure(go.Bar(x=values[::-1], y=labels[::-1], orientation="h"))
        fig.update_layout(xaxis_title=xtitle, yaxis={"tickmode": "linear",
                                                     "automargin": True})
    else:
        fig = go.Figure(go.Bar(x=labels, y=values))
        fig.update_layout(yaxis_title=xtitle)
    fig.update_layout(title=title)
    return fig


def _tradeoff_figure(obj: dict[str, Any]) -> go.Figure:
    """How the combined score ranks by the first two objectives as the
    weights move, decoupled (recombined) and joint (retrained)."""
    names = list(obj["objectives"])[:2]
    metric = obj["rank_metric"]
    fig = go.Figure()
    secs = obj["seconds_per_move"]
    for mode, label in (("decoupled", f"decoupled ({secs['decoupled'] * 1000:.1f} ms "
                                      f"a move: recombined)"),
                        ("joint", f"joint ({secs['joint']:.1f} s a move: "
                                  f"retrained)")):
        pts = obj["tradeoff"].get(mode) or []
        fig.add_scatter(
            x=[p[names[0]] for p in pts], y=[p[names[1]] for p in pts],
            mode="lines+markers", name=label,
            text=[", ".join(f"{k} {v:.2f}" for k, v in p["weights"].items())
                  for p in pts], hovertemplate="%{text}<br>%{x:.3f}, %{y:.3f}")
    for mode, symbol in (("decoupled", "star"), ("joint", "diamond")):
        at = obj["combined_at_spec_weights"][mode]
        fig.add_scatter(x=[at[names[0]]], y=[at[names[1]]], mode="markers",
                        marker={"symbol": symbol, "size": 14},
                        name=f"{mode} at the spec's weights")
    fig.update_layout(title="Trade-off (test): how the score ranks each objective",
                      xaxis_title=f"{names[0]} ({metric[names[0]]})",
                      yaxis_title=f"{names[1]} ({metric[names[1]]})")
    return fig


def _search_figure(found: dict[str, Any]) -> go.Figure:
    """Each trial's validation metric, the best so far, and the spec's own
    parameters' value."""
    hist = found["history"]
    fig = go.Figure()
    fig.add_scatter(x=[h["trial"] for h in hist], y=[h["value"] for h in hist],
                    mode="markers", name="trial")
    fig.add_scatter(x=[h["trial"] for h in hist], y=[h["best"] for h in hist],
                    mode="lines", line={"shape": "hv"}, name="best so far")
    fig.add_hline(y=found["spec_params_value"], line_dash="dot",
                  annotation_text="the spec's parameters")
    fig.update_layout(title=f"Search on validation ({found['trials']} trials, "
                            f"{found['sampler']})", xaxis_title="trial",
                      yaxis_title=f"valid {found['metric']}")
    return fig


def _interval_figure(band: dict[str, list[float]], info: dict[str, Any]
                     ) -> go.Figure:
    """The served prediction intervals of test rows sorted by predicted
    value, the actual targets as points (misses in red)."""
    x = list(range(len(band["value"])))
    fig = go.Figure()
    fig.add_scatter(x=x + x[::-1], y=band["upper"] + band["lower"][::-1],
                    fill="toself", mode="lines", line={"width": 0},
                    fillcolor="rgba(31,119,180,0.2)", name="interval")
    fig.add_scatter(x=x, y=band["value"], mode="lines", name="predicted",
                    line={"color": "#1f77b4"})
    miss = [not (lo <= v <= hi) for v, lo, hi in zip(band["y"], band["lower"],
                                                     band["upper"], strict=True)]
    fig.add_scatter(x=x, y=band["y"], mode="markers", name="actual",
                    marker={"size": 5, "color": ["#d62728" if m else "#333"
                                                 for m in miss]})
    served = info.get("served", "")
    cov = (info.get("methods") or {}).get(served, {}).get("coverage")
    fig.update_layout(
        title=f"{served} intervals at {info.get('coverage', 0):.0%} (test rows by "
              f"predicted value; covered {cov if cov is not None else '?'})",
        xaxis_title="test rows, sorted by predicted value", yaxis_title="target")
    return fig


def render_report(summary: dict[str, Any], *, curves: dict[str, Any],
                  importance: list[dict[str, Any]], path: Path,
                  audit: dict[str, Any] | None = None,
                  explanation: dict[str, Any] | None = None) -> Path:
    """Write the HTML report of one run to ``path``.

    ``summary`` is the run summary (what ``mlsd run --json`` prints); the report
    only renders what the stages recorded. ``audit`` is the run's pair audit
    (``AuditResult.to_dict()``), whose checks and charts get their section;
    ``explanation`` the SHAP values of the run's model (:func:`models.explain`).
    """
    plots: list[tuple[str, str]] = []
    model = summary.get("model") or {}
    metrics = model.get("metrics")
    if metrics and model.get("task") == "binary":
        for i, fig in enumerate([_pr_figure(curves, metrics),
                                 _confusion_figure(curves, model["classes"]),
                                 _roc_figure(curves)]):
            if fig is not None:
                plots.append((f"metric-plot-{i}", _fig_html(fig, f"metric-plot-{i}")))
    elif metrics and model.get("task") == "multilabel":
        fig = _label_pr_figure(curves, metrics, model["classes"])
        if fig is not None:
            plots.append(("metric-plot-0", _fig_html(fig, "metric-plot-0")))
    elif metrics and model.get("task") == "multiclass":
        fig = _confusion_figure(curves, model["classes"])
        if fig is not None:
            plots.append(("metric-plot-0", _fig_html(fig, "metric-plot-0")))
    elif metrics:
        res = curves.get("model", {}).get("residuals")
        if res:
            fig = go.Figure(go.Scattergl(x=res["y"], y=res["pred"], mode="markers",
                                         marker={"size": 4, "opacity": 0.5}))
            fig.update_layout(title="Predicted vs actual (test split)",
                              xaxis_title="actual", yaxis_title="predicted")
            plots.append(("metric-plot-0", _fig_html(fig, "metric-plot-0")))
        band = curves.get("model", {}).get("intervals")
        if band:
            plots.append(("interval-plot", _fig_html(_interval_figure(
                band, metrics.get("intervals") or {}), "interval-plot")))
    objectives = summary.get("objectives")
    if objectives and objectives.get("tradeoff"):
        plots.append(("tradeoff-plot", _fig_html(_tradeoff_figure(objectives),
                                                 "tradeoff-plot")))
    active = summary.get("active_learning")
    if active and active.get("curves"):
        fig = go.Figure()
        for name, curve in active["curves"].items():
            fig.add_scatter(x=[p["labels"] for p in curve],
                            y=[p["score"] for p in curve], mode="lines+markers",
                            name=f"{name} (mean {active['mean_score'][name]})",
                            line={"dash": "dash"} if name == "random" else None)
        fig.update_layout(title=f"Active learning: test {active['metric']} as "
                                f"labels are added", xaxis_title="labels",
                          yaxis_title=active["metric"])
        plots.append(("active-plot", _fig_html(fig, "active-plot")))
    found = ((summary.get("model") or {}).get("metrics") or {}).get("search")
    if found and found.get("history"):
        plots.append(("search-plot", _fig_html(_search_figure(found), "search-plot")))
    cal = ((summary.get("model") or {}).get("metrics") or {}).get("calibration")
    if cal and cal.get("reliability_before"):
        fig = go.Figure()
        fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect",
                        line={"dash": "dot", "color": "#888"})
        for side, label in (("before", "as fitted"), ("after", cal["kind"])):
            r = cal[f"reliability_{side}"]
            fig.add_scatter(x=r["predicted"], y=r["observed"], mode="lines+markers",
                            name=f"{label} (Brier {cal[f'brier_{side}']})")
        fig.update_layout(title="Reliability (test split): predicted against "
                                "observed", xaxis_title="mean predicted probability",
                          yaxis_title="observed positive rate")
        plots.append(("calibration-plot", _fig_html(fig, "calibration-plot")))
    data_plots = []
    reasons: dict[str, int] = {}
    for src in summary.get("sources", []):
        for k, v in src.get("reasons", {}).items():
            reasons[f"{src['source']} · {k}"] = v
    if reasons:
        top = sorted(reasons.items(), key=lambda kv: -kv[1])[:15]
        fig = _bar("Quarantined rows by reason", [k for k, _ in top],
                   [v for _, v in top], "rows")
        data_plots.append(("data-plot-0", _fig_html(fig, "data-plot-0")))
    split = summary.get("split", {}).get("sizes")
    if split:
        fig = _bar("Rows per split", list(split), list(split.values()), "rows",
                   horizontal=False)
        data_plots.append(("data-plot-1", _fig_html(fig, "data-plot-1")))
    label_plots = _agreement_plots(summary.get("label_agreement"))
    sample_plots = _sample_plots(summary.get("sample"))
    balance_plots = _balance_plots(summary.get("imbalance"))
    if importance:
        fig = _bar("Feature importance (model's own, gain)",
                   [i["feature"] for i in importance[:20]],
                   [i["importance"] for i in importance[:20]], "importance")
        plots.append(("importance-plot", _fig_html(fig, "importance-plot")))
    if explanation:
        cols = explanation["by_column"][:20]
        fig = _bar(f"Mean |SHAP| per source column ({explanation['explainer']})",
                   [c["column"] for c in cols], [c["shap"] for c in cols],
                   f"mean |sum of its inputs' SHAP|, "
                   f"{explanation['rows_used']:,} validation rows")
        plots.append(("shap-plot-0", _fig_html(fig, "shap-plot-0")))
        fig = _beeswarm(explanation["beeswarm"], "SHAP values of the model")
        if fig is not None:
            plots.append(("shap-plot-1", _fig_html(fig, "shap-plot-1")))
    audit_charts, audit_model_charts = audit_plots(audit) if audit else ([], [])
    page = _env.get_template("report.html.j2").render(
        s=summary, plots=plots, data_plots=data_plots, sample_plots=sample_plots,
        balance_plots=balance_plots, label_plots=label_plots,
        plotly_js=get_plotlyjs(),
        audit=audit, audit_charts=audit_charts + audit_model_charts,
        leak_checks=run_checklist(summary) if audit else [],
        verdict=run_verdict(summary.get("model") or {}),
        summary_json=html.escape(json.dumps(summary, indent=1, default=str)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _agreement_plots(ag: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Cohen's kappa of every pair of annotators (a heat map), each one's kappa
    against the others' majority, and the labels they confuse."""
    if not ag:
        return []
    if ag.get("multilabel"):
        return _set_agreement_plots(ag)
    out = []
    names = [p["annotator"] for p in ag["per_annotator"]]
    at = {n: i for i, n in enumerate(names)}
    grid = [[None] * len(names) for _ in names]
    for p in ag["pairs"]:
        grid[at[p["a"]]][at[p["b"]]] = grid[at[p["b"]]][at[p["a"]]] = p["kappa"]
    fig = go.Figure(go.Heatmap(z=grid, x=names, y=names, zmin=-1, zmax=1,
                               colorscale="RdBu", texttemplate="%{z:.2f}"))
    fig.update_layout(title="Cohen's kappa of each pair of annotators")
    out.append(("label-plot-0", _fig_html(fig, "label-plot-0")))
    kappas = [p["kappa_with_others"] for p in ag["per_annotator"]]
    fig = _bar("Each annotator against the others' majority (kappa)", names,
               [0 if k is None else k for k in kappas], "kappa")
    out.append(("label-plot-1", _fig_html(fig, "label-plot-1")))
    fig = go.Figure(go.Heatmap(z=ag["confusion"], x=ag["labels"], y=ag["labels"],
                               colorscale="Blues", texttemplate="%{z}"))
    fig.update_layout(title="Votes given together on an item (pairs of "
                            "annotators)", xaxis_title="one said",
                      yaxis_title="another said")
    out.append(("label-plot-2", _fig_html(fig, "label-plot-2")))
    return out


def _set_agreement_plots(ag: dict[str, Any]) -> list[tuple[str, str]]:
    """Label sets: the mean Jaccard similarity of every pair of annotators,
    each one's against the others' majority set, and each label's kappa."""
    names = [p["annotator"] for p in ag["per_annotator"]]
    at = {n: i for i, n in enumerate(names)}
    grid = [[None] * len(names) for _ in names]
    for p in ag["pairs"]:
        grid[at[p["a"]]][at[p["b"]]] = grid[at[p["b"]]][at[p["a"]]] = p["jaccard"]
    fig = go.Figure(go.Heatmap(z=grid, x=names, y=names, zmin=0, zmax=1,
                               colorscale="Blues", texttemplate="%{z:.2f}"))
    fig.update_layout(title="Mean Jaccard similarity of the sets of each pair of "
                            "annotators")
    out = [("label-plot-0", _fig_html(fig, "label-plot-0"))]
    js = [p["jaccard_with_others"] for p in ag["per_annotator"]]
    fig = _bar("Each annotator against the others' majority set (Jaccard)", names,
               [0 if j is None else j for j in js], "Jaccard")
    out.append(("label-plot-1", _fig_html(fig, "label-plot-1")))
    labels = [p["label"] for p in ag["per_label"]]
    fig = _bar("Each label as a yes/no question (Fleiss' kappa)", labels,
               [0 if p["fleiss_kappa"] is None else p["fleiss_kappa"]
                for p in ag["per_label"]], "kappa")
    out.append(("label-plot-2", _fig_html(fig, "label-plot-2")))
    return out


def _balance_plots(balance: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The resampling strategies side by side on validation."""
    rows = (balance or {}).get("comparison") or []
    if not rows:
        return []
    fig = go.Figure()
    names = [r["method"] + (" (chosen)" if r["chosen"] else "") for r in rows]
    for k in [k for k in rows[0] if k not in ("method", "chosen", "log_loss")]:
        fig.add_bar(x=names, y=[r[k] for r in rows], name=k)
    fig.update_layout(title="Resampling strategies on validation",
                      barmode="group", yaxis_title="metric on validation")
    return [("balance-plot-0", _fig_html(fig, "balance-plot-0"))]


def _sample_plots(sample: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The sample against the population: the shares of the categories of the
    columns whose shares moved most (the target first), side by side."""
    if not sample:
        return []
    cats = [b for b in sample.get("bias", []) if b["kind"] == "categorical"
            and b.get("shares")]
    cats.sort(key=lambda b: (-len(b["flags"]), -(b["total_variation"] or 0)))
    plots = []
    for b in cats[:3]:
        shares = b["shares"][:12]
        fig = go.Figure()
        names = [str(x["value"]) for x in shares]
        for side in ("population", "sample"):
            fig.add_bar(x=names, y=[x[side] for x in shares], name=side)
        fig.update_layout(title=f"{b['column']}: share of rows, sample against "
                                f"population", barmode="group",
                          yaxis_title="share of rows")
        div = f"sample-plot-{len(plots)}"
        plots.append((div, _fig_html(fig, div)))
    return plots


LEAK_CHECKS = ("duplicates_across_splits", "near_duplicates_across_splits",
               "group_overlap", "id_like_column", "time_overlap",
               "feature_after_target_time", "single_feature_power",
               "target_derived_feature", "outcome_signature",
               "preprocessed_before_split", "ablation_drop")


def audit_plots(doc: dict[str, Any]) -> tuple[list[tuple[str, str]],
                                              list[tuple[str, str]]]:
    """The audit's charts: generalisation (one-feature power, PSI, missing
    rates, class balance) and model (importance three ways, SHAP beeswarm)."""
    features = doc.get("features", {})
    plots: list[tuple[str, str]] = []

    def add(fig: go.Figure) -> None:
        div = f"audit-plot-{len(plots)}"
        plots.append((div, _fig_html(fig, div)))

    power = sorted(((c, f["one_feature_score"]) for c, f in features.items()
                    if "one_feature_score" in f), key=lambda kv: -kv[1])[:25]
    if power:
        name = "R2" if doc["task"] == "regression" else "AUC"
        add(_bar(f"Each feature alone ({name}, 3-fold CV on train)",
                 [c for c, _ in power], [v for _, v in power], name))
    psi = sorted(((c, f["psi"]) for c, f in features.items() if "psi" in f),
                 key=lambda kv: -kv[1])[:25]
    if psi:
        add(_bar("Distribution shift, train to test (PSI)", [c for c, _ in psi],
                 [v for _, v in psi], "PSI"))
    missing = sorted(((c, f["missing_train"], f["missing_test"]) for c, f in
                      features.items()), key=lambda r: -max(r[1], r[2]))[:25]
    if missing and any(max(r[1], r[2]) > 0 for r in missing):
        fig = go.Figure()
        labels = [r[0] for r in missing][::-1]
        fig.add_bar(x=[r[1] for r in missing][::-1], y=labels, orientation="h",
                    name="train")
        fig.add_bar(x=[r[2] for r in missing][::-1], y=labels, orientation="h",
                    name="test")
        fig.update_layout(title="Missing share per feature", xaxis_title="share",
                          barmode="group", yaxis={"tickmode": "linear",
                                                  "automargin": True})
        add(fig)
    classes = doc.get("profile", {}).get("classes")
    if classes:
        fig = go.Figure()
        names = list(classes)
        for split in ("train", "test"):
            total = sum(v[split] for v in classes.values()) or 1
            fig.add_bar(x=names, y=[classes[c][split] / total for c in names],
                        name=split)
        fig.update_layout(title="Class balance", yaxis_title="share of rows",
                          barmode="group")
        add(fig)
    model_plots: list[tuple[str, str]] = []
    model = doc.get("model") or {}
    imp = model.get("importance") or []
    if imp:
        top = imp[:20]
        fig = go.Figure()
        labels = [d["feature"] for d in top][::-1]
        for kind, title in (("gain", "gain (share)"), ("permutation",
                                                      "permutation"),
                            ("shap", "mean |SHAP|")):
            vals = [d[kind] or 0 for d in top]
            peak = max(vals) or 1
            fig.add_bar(x=[v / peak for v in vals][::-1], y=labels, orientation="h",
                        name=title)
        fig.update_layout(title="Feature importance (each scaled to its largest)",
                          barmode="group", xaxis_title="relative importance",
                          yaxis={"tickmode": "linear", "automargin": True})
        div = f"audit-plot-{len(plots) + len(model_plots)}"
        model_plots.append((div, _fig_html(fig, div)))
    fig = _beeswarm((model.get("shap") or {}).get("beeswarm") or [],
                    "SHAP values of the probe")
    if fig is not None:
        div = f"audit-plot-{len(plots) + len(model_plots)}"
        model_plots.append((div, _fig_html(fig, div)))
    return plots, model_plots


def _beeswarm(bee: list[dict[str, Any]], title: str) -> go.Figure | None:
    """A beeswarm plot: one row of points per feature, a point per explained
    row at its SHAP value, coloured by the feature's (scaled) value."""
    if not bee:
        return None
    fig = go.Figure()
    rng = np.random.default_rng(0)
    for i, b in enumerate(reversed(bee)):
        n = len(b["shap"])
        fig.add_scattergl(
            x=b["shap"], y=i + rng.uniform(-0.3, 0.3, n), mode="markers",
            name=b["feature"], showlegend=False,
            marker={"size": 4, "opacity": 0.6, "color": [
                -1 if v is None else v for v in b["value"]],
                "colorscale": "Bluered", "cmin": 0, "cmax": 1,
                "showscale": i == 0, "colorbar": {"title": "input value"}})
    fig.update_layout(title=title,
                      xaxis_title="SHAP value on validation rows (effect on the "
                                  "output)",
                      yaxis={"tickmode": "array", "tickvals": list(range(len(bee))),
                             "ticktext": [b["feature"] for b in reversed(bee)],
                             "automargin": True}, height=max(360, 40 * len(bee)))
    return fig


def run_verdict(model: dict[str, Any]) -> str | None:
    """The course's "is ML needed here" verdict on the run's own model against
    its baselines (test split), with the numbers it rests on, so the words
    cannot say what the metrics table does not."""
    metrics = model.get("metrics") or {}
    task = model.get("task")
    test = (metrics.get("model") or {}).get("test") or {}
    # a 0-1 score where higher is better: R2 for numbers (RMSE has no scale)
    name = "r2" if task == "regression" else metrics.get("primary")
    score = test.get(name)
    if score is None or score != score:
        return None
    base = metrics.get("baselines") or {}

    def of(b: str) -> float | None:
        v = ((base.get(b) or {}).get("test") or {}).get(name)
        return None if v is None or v != v else v

    prior, one = of("prior"), of("one_feature")
    desc = (base.get("one_feature") or {}).get("description", "one feature")
    if prior is not None and score - prior < 0.05:
        return (f"the model barely beats the "
                f"{(base.get('prior') or {}).get('description', 'prior')} "
                f"({name} {score:.3f} against {prior:.3f}): the features carry "
                f"little signal")
    if one is not None and score - one < 0.01:
        return (f"one feature does nearly as well as the model ({name} {one:.3f} "
                f"for the {desc}, {score:.3f} for the model): a rule may be enough")
    if one is not None:
        return (f"the model beats the best one-feature rule by a clear margin "
                f"({name} {score:.3f} against {one:.3f} for the {desc})")
    return f"the model beats the baselines ({name} {score:.3f})"


def run_checklist(summary: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The run report's leakage checklist: from every finding the findings
    table shows (the split's checks and the probe's), not the probe's alone."""
    return leak_table({"findings": summary.get("audit") or []})


def leak_table(doc: dict[str, Any]) -> list[tuple[str, str | None]]:
    """Every leakage check with the worst severity it found (None: quiet)."""
    fired: dict[str, str] = {}
    rank = {"low": 0, "medium": 1, "high": 2}
    for f in doc["findings"]:
        if rank[f["severity"]] >= rank.get(fired.get(f["check"], "low"), -1):
            fired[f["check"]] = f["severity"]
    return [(c, fired.get(c)) for c in LEAK_CHECKS]


def render_audit(doc: dict[str, Any], path: Path) -> Path:
    """Write the HTML report of one audit (``AuditResult.to_dict()``) to
    ``path``: the leakage checks and their findings with evidence, the
    generalisation and model plots, the design review and the data profile."""
    plots, model_plots = audit_plots(doc)
    checks = leak_table(doc)
    page = _env.get_template("audit.html.j2").render(
        a=doc, plots=plots, model_plots=model_plots, checks=checks,
        leak_checks=LEAK_CHECKS,
        plotly_js=get_plotlyjs(),
        doc_json=json.dumps(doc, indent=1, default=str))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def monitor_plots(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """Figures over time: each input's PSI by window (the eight that moved
    most), the served prediction's mean, and the live metric."""
    wins = [w for w in doc.get("windows", []) if "psi" in w]
    if not wins:
        return []
    x = [w["start"] for w in wins]
    out = []
    cols = sorted({c for w in wins for c in w["psi"]},
                  key=lambda c: -max(w["psi"].get(c) or 0 for w in wins))[:8]
    fig = go.Figure()
    for c in cols:
        fig.add_scatter(x=x, y=[w["psi"].get(c) for w in wins], mode="lines+markers",
                        name=c)
    limit = doc.get("thresholds", {}).get("psi")
    if limit is not None:
        fig.add_hline(y=limit, line_dash="dash", annotation_text=f"PSI {limit}")
    fig.update_layout(title="Each input's PSI against the training rows, by window",
                      yaxis_title="PSI")
    out.append(("monitor-plot-0", _fig_html(fig, "monitor-plot-0")))
    if any("prediction_mean" in w for w in wins):
        fig = go.Figure()
        fig.add_scatter(x=x, y=[w.get("prediction_mean") for w in wins],
                        mode="lines+markers", name="served")
        ref = (doc.get("prediction") or {}).get("reference_mean")
        if ref is not None:
            fig.add_hline(y=ref, line_dash="dash", annotation_text="test split")
        fig.update_layout(title="The served prediction's mean, by window",
                          yaxis_title="mean prediction")
        out.append(("monitor-plot-1", _fig_html(fig, "monitor-plot-1")))
    live = doc.get("live") or {}
    key = f"live_{live.get('primary')}"
    if any(key in w for w in wins):
        fig = go.Figure()
        fig.add_scatter(x=x, y=[w.get(key) for w in wins], mode="lines+markers",
                        name="served, naturally labelled")
        fig.add_hline(y=live.get("test"), line_dash="dash",
                      annotation_text="test split")
        fig.update_layout(title=f"{live.get('primary')} on served rows with a "
                                f"natural label, by window",
                          yaxis_title=str(live.get("primary")))
        out.append(("monitor-plot-2", _fig_html(fig, "monitor-plot-2")))
    return out


def render_monitor(doc: dict[str, Any], path: Path) -> Path:
    """Write the HTML report of one monitoring pass (``mlsd monitor``)."""
    page = _env.get_template("monitor.html.j2").render(
        m=doc, plots=monitor_plots(doc), plotly_js=get_plotlyjs(),
        doc_json=json.dumps(doc, indent=1, default=str))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
