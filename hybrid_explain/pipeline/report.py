"""report.html: one self-contained page telling the run's story in the order the pipeline ran. Every figure
is inlined as a data URI, the page refers to nothing outside itself, reads at laptop width and prints.

    data -> training -> test evaluation -> how far to trust each prediction -> global importance -> explained
    samples -> SHAP -> attention -> attribution methods -> misclassified test samples -> counterfactuals -> run
    settings -> versions and timings

The report has one figure of its own, data_summary.png (example training series per class), queued by
`data_summary` while the run computes and drawn from the training table; like every figure it never runs
the model."""
import base64
import datetime
import html
import importlib.metadata
import os
import platform
import re
import struct

import numpy as np

from hybrid_explain.baseline import baseline_line
from hybrid_explain.figures import base, summary_figures

CSS = """
:root { --ok: #1a7f37; --ok-bg: #f0f9f2; --wrong: #c2185b; --wrong-bg: #fdf0f5; --line: #d8dde3; --muted: #57606a; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; background: #fff;
       max-width: 1240px; margin: 0 auto; padding: 1.2em 1.5em 3em; }
h1 { font-size: 1.7em; margin: .2em 0 .1em; } h2 { font-size: 1.35em; border-bottom: 2px solid var(--line);
     padding-bottom: .2em; margin: 2.2em 0 .6em; } h3 { font-size: 1.1em; margin: 1.2em 0 .4em; }
p { margin: .5em 0; max-width: 75em; } .muted, figcaption { color: var(--muted); } code { font-size: .92em; }
a { color: #0969da; }
nav { border: 1px solid var(--line); border-radius: 8px; padding: .5em 1em; margin: 1em 0; font-size: .95em; }
nav ol { margin: .2em 0; padding-left: 1.4em; columns: 3 14em; }
.stats { display: flex; flex-wrap: wrap; gap: .6em; margin: 1em 0; }
.stat { border: 1px solid var(--line); border-radius: 8px; padding: .4em .9em; min-width: 8.5em; }
.stat b { display: block; font-size: 1.35em; } .stat span { color: var(--muted); font-size: .85em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
td, th { border: 1px solid var(--line); padding: .3em .65em; text-align: left; vertical-align: top; }
th { background: #f3f5f7; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: 600; background: #f8f9fa; }
.scroll { overflow-x: auto; max-width: 100%; }
.row { display: flex; flex-wrap: wrap; gap: 1.2em; align-items: flex-start; }
.row > * { flex: 1 1 340px; min-width: 0; } .row > .side { flex: 0 1 auto; }
figure { margin: .8em 0; break-inside: avoid; }
figure img { max-width: 100%; height: auto; display: block; border: 1px solid #eef0f2; cursor: zoom-in; }
figcaption { font-size: .88em; margin-top: .25em; }
.figs { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 480px), 1fr)); gap: 0 1.2em; }
.figs > .wide { grid-column: 1 / -1; }
.card { border: 1px solid var(--line); border-left: 8px solid var(--line); border-radius: 8px; padding: .4em 1.2em .6em;
        margin: 1.4em 0; break-inside: avoid-page; }
.card.ok { border-left-color: var(--ok); } .card.wrong { border-left-color: var(--wrong); background: var(--wrong-bg); }
.card h3 { margin: .4em 0 .2em; display: flex; flex-wrap: wrap; gap: .2em .8em; align-items: baseline; }
.badge { display: inline-block; border-radius: 1em; padding: .05em .7em; font-size: .85em; font-weight: 600;
         color: #fff; }
.badge.ok { background: var(--ok); } .badge.wrong { background: var(--wrong); }
.meter { display: inline-block; width: 8em; height: .7em; background: #e6e9ed; border-radius: .35em;
         vertical-align: middle; overflow: hidden; } .meter i { display: block; height: 100%; background: #4c5fd5; }
.note { background: #f6f8fa; border-left: 4px solid #8c959f; padding: .5em 1em; }
.warn { background: #fff8e5; border-left: 4px solid #d4a72c; padding: .5em 1em; }
.alarm code { white-space: nowrap; }
.alarm { background: var(--wrong-bg); border: 2px solid var(--wrong); border-left-width: 8px; border-radius: 8px;
         padding: .4em 1.2em .6em; margin: 1em 0; } .alarm h2 { border: none; margin: .3em 0; color: var(--wrong); }
.flag { color: var(--wrong); font-weight: 600; }
#zoom { position: fixed; inset: 0; background: rgba(20, 24, 28, .85); overflow: auto; z-index: 10; cursor: zoom-out;
        padding: 1em; } #zoom img { background: #fff; margin: auto; display: block; max-width: none; }
@media print {
  body { max-width: none; padding: 0; font-size: 11pt; } nav, #zoom { display: none; }
  h2 { break-before: auto; break-after: avoid; } figure, .card, table { break-inside: avoid; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  a { color: inherit; text-decoration: none; }
}
"""

# Click a figure to see it at full size; click again to close. Builds its overlay on demand (no empty <img>).
SCRIPT = """
document.addEventListener('click', function (event) {
  var zoom = document.getElementById('zoom');
  if (zoom) { zoom.remove(); return; }
  var target = event.target;
  if (target.tagName !== 'IMG' || !target.closest('figure')) return;
  zoom = document.createElement('div');
  zoom.id = 'zoom';
  var copy = document.createElement('img');
  copy.src = target.src;
  copy.alt = target.alt;
  zoom.appendChild(copy);
  document.body.appendChild(zoom);
});
"""

SECTIONS = [("data", "Data"), ("training", "Training"), ("evaluation", "Test evaluation"), ("predictions", "Predictions"),
            ("trust", "How far to trust each prediction"),
            ("global", "What the model relies on"), ("every_row", "Every row explained"), ("samples", "Explained samples"), ("shap", "SHAP"), ("attention", "Attention"),
            ("methods", "Attribution methods compared"), ("misclassified", "Misclassified test samples"),
            ("counterfactuals", "Counterfactuals"),
            ("settings", "Run settings"), ("versions", "Versions and timings")]
WIDE_PX = 1000  # figures wider than this get a full row; narrower ones share it with a neighbour
VERSIONED = ["torch", "numpy", "shap", "captum", "scikit-learn", "pandas", "matplotlib", "seaborn"]


# -----------------------------------------------------------------------------
# HTML pieces
def esc(value):
    return html.escape(str(value))


def number(value, digits=3):
    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return f"{value:.{digits}g}" if value and (abs(value) < 1e-3 or abs(value) >= 1e5) else f"{value:.{digits}f}"
    return str(value)


def table(rows, header, numeric=(), css=""):
    """rows of cells; a cell is text (escaped) or ("html", markup). Columns in `numeric` align right."""
    def cell(value, j):
        tag = "td class='num'" if j in numeric else "td"
        content = value[1] if isinstance(value, tuple) and value[0] == "html" else esc(value)
        return f"<{tag}>{content}</td>"

    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(f"<tr{css if i == len(rows) - 1 else ''}>" + "".join(cell(v, j) for j, v in enumerate(row))
                   + "</tr>" for i, row in enumerate(rows))
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    return struct.unpack(">II", head[16:24]) if head[:8] == b"\x89PNG\r\n\x1a\n" else (0, 0)


def stat(value, label):
    return f"<div class='stat'><b>{value}</b><span>{esc(label)}</span></div>"


def meter(fraction):
    width = 100 * max(0.0, min(1.0, fraction))
    return f"<span class='meter' aria-hidden='true'><i style='width:{width:.0f}%'></i></span>"


class Figures:
    """The run's PNGs in figure_dir, each inlined once; remembers which were shown."""

    def __init__(self, figure_dir):
        self.folder = figure_dir
        self.found = sorted(f for f in os.listdir(figure_dir) if f.endswith(".png"))
        self.shown = []

    def __call__(self, name, caption, wide=None):
        if name not in self.found or name in self.shown:
            return ""
        self.shown.append(name)
        path = os.path.join(self.folder, name)
        width, height = png_size(path)
        with open(path, "rb") as f:
            data = base64.b64encode(f.read()).decode("ascii")
        wide = width > WIDE_PX if wide is None else wide
        return (f"<figure{' class=wide' if wide else ''}><img src=\"data:image/png;base64,{data}\" "
                f"width='{width}' height='{height}' alt='{esc(caption)}'>"
                f"<figcaption>{esc(caption)} <span class='muted'>({esc(name)})</span></figcaption></figure>")

    def rest(self):
        """The PNGs not shown yet."""
        return [name for name in self.found if name not in self.shown]


def parse_classification_report(text):
    """sklearn's text report -> rows [name, precision, recall, f1, support] (accuracy: f1 and support only);
    None when a line does not parse, so the caller shows the text as it is."""
    rows = []
    for line in text.strip().splitlines()[1:]:
        tokens = line.split()
        if not tokens:
            continue
        try:
            if tokens[0] == "accuracy" and len(tokens) == 3:
                rows.append(["accuracy", "", "", float(tokens[1]), int(tokens[2])])
                continue
            *name, precision, recall, f1, support = tokens
            rows.append([" ".join(name), float(precision), float(recall), float(f1), int(support)])
        except ValueError:
            return None
    return rows


def section(key, body, intro=""):
    """One of SECTIONS; write_report numbers the headings of those it shows (`numbered`)."""
    return f"<section id='{key}'><h2>{esc(dict(SECTIONS)[key])}</h2>{intro}{body}</section>"


def numbered(parts):
    """The parts with the headings of SECTIONS numbered 1, 2, ... in the order shown: a run shows only some of them
    (no evaluation without labels, no predictions section with them), and the numbers must not skip."""
    keys = [f"<section id='{key}'><h2>" for key, _ in SECTIONS]
    shown = [part for part in parts if part.startswith(tuple(keys))]
    return [part.replace("<h2>", f"<h2>{shown.index(part) + 1}. ", 1) if part in shown else part for part in parts]


# -----------------------------------------------------------------------------
# The top of the page: has the model learned its task?
def accuracy_stats(check):
    """The stat boxes beside the test accuracy: its Wilson interval and the majority-class rate."""
    low, high = check["interval_95"]
    return (stat(f"{number(low)}&ndash;{number(high)}", "95 % Wilson interval of the accuracy")
            + (stat(number(check["majority_rate"]), f"always answering the largest training class "
                                                    f"({check['majority_class']})") if "majority_rate" in check else ""))


def accuracy_box(check):
    """A prominent box when the model has not learned its task (checks.accuracy_check), else a line with the numbers
    it was judged on."""
    facts = []
    if "test_accuracy" in check:
        facts.append(f"test accuracy {number(check['test_accuracy'])} (95 % Wilson interval "
                     f"{number(check['interval_95'][0])}&ndash;{number(check['interval_95'][1])}, "
                     f"{check['test_rows']} rows)" + (f" against {number(check['majority_rate'])} for always answering "
                                                      f"the largest training class <b>{esc(check['majority_class'])}</b>"
                                                      if "majority_rate" in check else ""))
    if check["final_train_accuracy"] is not None:
        facts.append(f"final training accuracy {number(check['final_train_accuracy'])}"
                     + (f" (a model that fitted its rows reaches at least {number(check['train_accuracy_needed'])})"
                        if "train_accuracy_needed" in check else ""))
    if check["learned"]:
        return f"<p class='muted'>The model has learned its task, judged on: {'; '.join(facts)}.</p>" if facts else ""
    return ("<div class='alarm' role='alert'><h2>&#9888; This model has not learned its task</h2><ul>"
            + "".join(f"<li>{esc(w[0].upper() + w[1:])}.</li>" for w in check["warnings"])
            + f"</ul><p><b>So {flags_as_code(esc(check['advice']))}.</b></p></div>")


def flags_as_code(text):
    """Command-line flags in text as <code>, kept on one line: a browser may break a line after a hyphen."""
    return re.sub(r"(--[\w=.]+)", r"<code>\1</code>", text)


def baseline_note(summary, network_accuracy):
    """The baseline's scores beside the network's (metrics.json's `baseline`), one line under the summary."""
    return f"<p class='muted'>{esc(baseline_line(summary, network_accuracy))}.</p>" if summary else ""


def skipped_note(reason):
    return "" if reason is None else f"<p class='note'>Explanations skipped: {esc(reason)}.</p>"


# -----------------------------------------------------------------------------
# Sections
def series_note(series) -> str:
    """metrics.json's "series" (lengths and filled cells per file) as a paragraph; "" when every row was whole."""
    if not series:
        return ""
    lines = []
    for part, counts in series.items():
        if not isinstance(counts, dict) or not (counts["shorter_rows"] or counts["filled_rows"]):
            continue
        text = (f"the {esc(part)} file: {counts['shorter_rows']} of {counts['rows']} rows shorter than the columns "
                f"(lengths {counts['length_min']}&ndash;{counts['length_max']})")
        filled = {c: n for c, n in counts["filled_cells"].items() if n}
        if filled:
            text += (f"; {sum(filled.values())} missing cells in {counts['filled_rows']} rows interpolated "
                     f"({esc(', '.join(f'{c}: {n}' for c, n in filled.items()))})")
        lines.append(text)
    if not lines:
        return ""
    return ("<p class='note'>Rows of their own lengths: " + "; ".join(lines) + ". The model reads each series only "
            "to its own end, and every explanation gives the steps after it exactly 0. Missing values inside a "
            f"series: <code>MISSING_VALUES={esc(series['missing_values'])}</code> (linear in time, the nearest "
            "observed value at a series' ends).</p>")


def data_section(train_counts, test, predictions, figure, series=None):
    """train_counts: training rows per class (None for a checkpoint of an earlier version, reused); test: the
    explained file's table (or its first part); predictions: metrics.json's section of it; series: metrics.json's
    "series" (row lengths and filled cells)."""
    test_counts = list(predictions["true_class_counts"].values()) if test.labelled else None
    columns = ([("training rows", train_counts)] if train_counts is not None else []) + \
        ([("test rows", test_counts)] if test_counts is not None else [])
    counts = [[name] + [int(c[k]) for _, c in columns] for k, name in enumerate(test.class_names)]
    counts.append(["all classes"] + [int(sum(c)) for _, c in columns])
    channels, length = test.X.shape[1], test.X.shape[2]
    facts = (f"<p><b>{channels}</b> channel{'s' if channels != 1 else ''} "
             f"(<code>{esc(', '.join(test.channel_names))}</code>) &times; <b>{length}</b> time step"
             f"{'s' if length != 1 else ''} per sample, <b>{len(test.class_names)}</b> classes. The model sees each "
             "channel z-scored with the training file's mean and standard deviation; the figures of explained "
             "samples draw these normalized values.</p>")
    facts += series_note(series)
    if not test.labelled:
        facts += (f"<p class='note'>The explained file has <b>no labels</b> ({predictions['rows']} rows): this run predicts "
                  "and explains; accuracy, the confusion matrix and the misclassified rows need labels.</p>")
    summary_table = table(counts, ["class"] + [name for name, _ in columns], numeric=tuple(range(1, len(columns) + 1)),
                          css=" class='total'") if columns else ""
    return section("data", facts + "<div class='row'><div class='side'>" + summary_table + "</div>"
                   + figure("data_summary.png", "Example series per class, raw values") + "</div>")


def training_section(metrics, history, figure):
    if not history:
        return section("training", "<p>No training history in the output folder: the checkpoint was reused "
                                   "(<code>--train=False</code>) and this run only evaluated and explained it.</p>")
    kept = next((row for row in history if row["epoch"] == metrics["best_epoch"]), None)
    text = f"<p>{len(history)} epochs run in {sum(row['seconds'] for row in history):.1f} s; "
    if metrics["val_accuracy"] is None:
        text += (f"every training row was fitted (no validation split) and the last epoch, <b>{metrics['best_epoch']}"
                 f"</b>, was kept (training accuracy {number(kept['train_accuracy']) if kept else '-'}")
    else:
        text += (f"the checkpoint of epoch <b>{metrics['best_epoch']}</b> was kept, the one with the lowest validation "
                 f"loss (validation accuracy {number(metrics['val_accuracy'])}")
        if kept:
            text += f", validation loss {number(kept['val_loss'])}, training accuracy {number(kept['train_accuracy'])}"
    return section("training", text + ").</p>" + figure("train_plots_hybrid_explained.png",
                                                        "Loss and accuracy per epoch; the dotted line marks the kept "
                                                        "epoch", wide=True))


def predictions_section(predictions):
    """Without labels: what the model predicted, and the rows it is least sure of."""
    total = predictions["rows"]
    distribution = table([[name, count, ("html", f"{count / total:.1%} {meter(count / total)}")]
                          for name, count in predictions["predicted_class_counts"].items()],
                         ["predicted class", "rows", "share"], numeric=(1,))
    unsure = table([[r["row"], r["predicted"], ("html", f"{r['confidence']:.1%} {meter(r['confidence'])}")]
                    for r in predictions["least_confident"]], ["row", "predicted", "probability"], numeric=(0,))
    return section("predictions", f"<p>{total} rows predicted; every row's class probabilities are in "
                                 "<code>trust.csv</code>.</p><div class='row'><div><h3>Predicted classes</h3>"
                   + distribution + "</div><div><h3>The least confident rows</h3>" + unsure + "</div></div>")


def evaluation_section(metrics, classification_report, figure):
    rows = parse_classification_report(classification_report)
    if rows:
        report_html = table([[r[0]] + [number(v) if isinstance(v, float) else v for v in r[1:]] for r in rows],
                            ["class", "precision", "recall", "F1", "test rows"], numeric=(1, 2, 3, 4))
    else:
        report_html = f"<pre>{esc(classification_report)}</pre>"
    wrong = metrics["attributions"]["misclassified"]["count"] if "attributions" in metrics else None
    summary = (f"<p>Test accuracy <b>{number(metrics['test_accuracy'])}</b>, macro F1 "
               f"<b>{number(metrics['test_macro_f1'])}</b> on {metrics['predictions']['rows']} test rows"
               + (f"; {wrong} misclassified (<a href='#misclassified'>gallery</a>)" if wrong else "") + ".</p>")
    return section("evaluation", summary + "<div class='row'>" + figure("confusion_matrix.png",
                                                                          "Confusion matrix of the test set",
                                                                          wide=False)
                   + f"<div><h3>Per-class report</h3>{report_html}</div></div>")


# -----------------------------------------------------------------------------
# How far to trust each prediction (docs/trust.md)
def calibration_text(calibration):
    """Whether the probabilities are calibrated, and with labels their calibration error before and after."""
    rows = f" on the {calibration['rows']} labelled rows ({calibration['bins']} equal-width bins)" if "rows" in calibration else ""
    if calibration["calibrated"]:
        text = (f"<p>The probabilities are temperature-scaled (the logits divided by T = "
                f"<b>{number(calibration['temperature'])}</b>, fitted on the {calibration['held_out_rows']} validation "
                "rows held out from training); the predicted classes are unchanged.")
        if rows:
            text += (f" Expected calibration error{rows}: {number(calibration['ece_before'])} before scaling, "
                     f"<b>{number(calibration['ece_after'])}</b> after.")
        return text + "</p>"
    return ("<p class='warn'>The probabilities are <b>uncalibrated</b>: no temperature was fitted (training held "
            "out no rows, <code>--val_fraction=0</code>, or the checkpoint predates calibration), so a probability of "
            "0.9 need not mean right 9 times in 10. Train with <code>--val_fraction=0.25</code> to calibrate them and to get prediction "
            "sets." + (f" Expected calibration error{rows}: <b>{number(calibration['ece_before'])}</b>." if rows else "")
            + "</p>")


def conformal_text(sets):
    if sets["threshold"] is None:
        return (f"<p class='warn'>No informative prediction sets: {sets['held_out_rows']} held-out rows, fewer than the "
                f"{sets['held_out_rows_needed']} that a level of {number(sets['level'])} needs, so every set "
                "(<code>prediction_set</code> in <code>trust.csv</code>) holds every class.</p>")
    measured = (f" On the {sets['rows']} labelled rows they held the true class for <b>{number(sets['coverage'])}</b>"
                f" of them." if "coverage" in sets else "")
    return (f"<p>Prediction sets (<code>prediction_set</code> in <code>trust.csv</code>, split-conformal, "
            f"{esc(sets['score'].upper())} score, from {sets['held_out_rows']} held-out rows): each holds the true class "
            f"with probability at least {number(sets['level'])} provided the new rows are drawn like the held-out ones "
            f"(exchangeable). Mean set size <b>{number(sets['mean_set_size'])}</b>, "
            f"{sets['empty_sets']:.1%} empty (no class plausible enough).{measured}</p>"
            + table([[size, count] for size, count in enumerate(sets["set_size_counts"]) if count],
                    ["classes in the set", "rows"], numeric=(0, 1)))


def ood_text(found):
    flagged = table([[r["row"], r["predicted"], number(r["score"])] for r in found["flagged_rows"]],
                    ["row", "predicted", "score"], numeric=(0, 2)) if found["flagged_rows"] else ""
    listed = len(found["flagged_rows"])
    return (f"<p>Rows unlike the training rows (<code>out_of_distribution</code> in <code>trust.csv</code>): "
            f"the {esc(found['score'])} score in the model's representation, flagged above {number(found['threshold'])}, "
            f"which {found['false_alarm_rate']:.0%} of the {found['reference_rows']} training rows exceed. "
            f"<b>{found['flagged']}</b> of {found['rows']} rows flagged"
            + (f" (the {listed} highest listed)" if listed < found["flagged"] else "") + ": do not trust their "
            "predictions, nor their explanations, as far as the others'.</p>" + flagged)


def similar_text(entries, explained, figure):
    parts = []
    for i, (entry, sample) in enumerate(zip(entries, explained)):
        neighbours = table([[n["training_row"], n["label"], number(n["distance"])] for n in entry["neighbours"]],
                           ["training row", "class", "distance"], numeric=(0, 2))
        parts.append(f"<h3>Explained sample {i}: row {sample['row']}, predicted {esc(sample['predicted'])}</h3>"
                     f"<p>{entry['share_predicted_class']:.0%} of its {len(entry['neighbours'])} nearest training rows "
                     "are of the predicted class.</p><div class='row'>"
                     + figure(f"similar_cases_{i}.png", f"Row {sample['row']} beside its nearest training rows")
                     + f"<div class='side'>{neighbours}</div></div>")
    return "".join(parts)


def trust_section(trust, explained, figure):
    """How far to trust each prediction (docs/trust.md): calibration, prediction sets, rows unlike the training rows
    and the training rows most like each explained one."""
    body = (calibration_text(trust["calibration"])
            + figure("reliability.png", "Reliability: accuracy against confidence per bin, before and after scaling",
                     wide=False))
    if "reason" in trust:
        return section("trust", f"<p class='note'>{esc(trust['reason'])}</p>" + body)
    body += conformal_text(trust["conformal"]) + ood_text(trust["ood"])
    if trust.get("similar"):
        body += ("<h3>Similar training cases</h3><p>The training rows nearest to each explained row in the model's "
                 "representation (what its classifier reads), with their classes: an explanation by example.</p>"
                 + similar_text(trust["similar"], explained, figure))
    return section("trust", body)


def interval_text(entry, digits=3):
    """"0.412 [0.301, 0.530]": a mean and its interval (no interval: the mean alone)."""
    if entry["low"] is None:
        return number(entry["mean"], digits)
    return f"{number(entry['mean'], digits)} [{number(entry['low'], digits)}, {number(entry['high'], digits)}]"


def top_group(importance):
    return max(importance, key=lambda name: importance[name]["mean"])


def class_sentence(name, entry):
    """One sentence: the class's most important channel and time window, or that it relies on nothing measurable."""
    channel, window = top_group(entry["channel_importance"]), top_group(entry["window_importance"])
    uninformative = [c for c, e in entry["channel_importance"].items() if e["informative"] is False]
    text = (f"<b>{esc(name)}</b> ({entry['rows']} row{'s' if entry['rows'] != 1 else ''}): mostly channel "
            f"<b>{esc(channel)}</b> ({interval_text(entry['channel_importance'][channel])}) and window "
            f"<b>{esc(window)}</b> ({interval_text(entry['window_importance'][window])})")
    if entry["channel_importance"][channel]["informative"] is None:
        text += f" <span class='flag'>(n={entry['rows']}: no interval; read these values as one or two rows' own)</span>"
    elif uninformative:
        text += f"; {esc(', '.join(uninformative))} carr{'ies' if len(uninformative) == 1 else 'y'} no measurable information"
    return f"<li>{text}.</li>"


def global_section(summary, figure):
    channels = summary["channel_importance"]
    empty = [name for name, e in channels.items() if e["informative"] is False]
    methods = ", ".join(f"{g}: {m}" for g, m in summary["method"].items())
    intro = (f"<p>Over <b>{summary['rows']}</b> rows of the file (seeded, stratified over the predicted classes), the "
             "Shapley value of each <b>whole channel</b> and of each <b>time window</b> (all channels together) for "
             f"the {esc(summary['output'])}, against {summary['num_background']} background rows ({esc(methods)}; "
             f"{summary['seconds']['total']:.1f} s). These are Shapley values of the groups themselves, not sums of "
             "finer values; each row's values add up to f(x) &minus; E f. Importance is the mean |value| over the "
             f"rows with a {summary['confidence']:.0%} bootstrap interval over the rows; classes are the predicted "
             "ones.</p><p class='note'>Mean |value| is never below zero, so information is judged on signed values: "
             "the <b>contrast</b> of a channel or window is how much more it supports a class (its logit minus the "
             "mean logit) on the rows the model assigns to that class than on the other rows. It <b>carries no "
             "measurable information</b> when the interval of its contrast contains zero (at "
             f"{summary['contrast_confidence']['channels']:.1%} for channels, "
             f"{summary['contrast_confidence']['windows']:.1%} for windows: Bonferroni over the channels or "
             "windows): the model's output may move with it, but not in step with its decisions.</p>")
    sentences = "<ul>" + "".join(class_sentence(name, entry) for name, entry in summary["per_class"].items()) + "</ul>"
    if empty:
        sentences += (f"<p class='warn'>Over all rows, channel{'s' if len(empty) > 1 else ''} <b>{esc(', '.join(empty))}</b> "
                      "carr" + ("ies" if len(empty) == 1 else "y") + " no measurable information.</p>")
    ranked = sorted(channels, key=lambda name: -channels[name]["mean"])
    rows = [[name, interval_text(channels[name]),
             interval_text(channels[name]["contrast"]) if channels[name]["contrast"] else "n/a",
             "no measurable information" if channels[name]["informative"] is False else
             "n/a" if channels[name]["informative"] is None else "informative"] for name in ranked]
    body = sentences + table(rows, ["channel", "mean |value| [interval]", "contrast [interval]", "verdict"]) + "<div class='figs'>" + "".join([
        figure("global_channels.png", "Channels ranked by their Shapley value, with intervals, overall and per class",
               wide=True),
        figure("global_windows_per_class.png", "Importance of each time window per predicted class, over the "
                                               "class's mean signal", wide=True),
        figure("global_map_per_class.png", "Mean signed Shapley value per channel and time window, per class",
               wide=True)]) + "</div>"
    return section("global", body, intro)


def every_row_section(summary, figure):
    """EXPLAIN_ROWS="all" or "first:N" (pipeline/parts.py): what every row's explanation says, per predicted class."""
    rate = summary["rows_per_second"]
    intro = (f"<p><b>{summary['rows']:,}</b> rows explained in {summary['parts']} parts of {summary['part_rows']} "
             f"rows (<code>{esc(summary['folder'])}/</code>: SHAP values, every attribution method's map and the "
             f"counterfactual of each row; <code>explained_rows.csv</code>: a line per row). "
             f"{summary['rows_explained_now']:,} were explained by this run in {summary['processes']} "
             f"process{'es' * (summary['processes'] > 1)}"
             + (f" at {rate:.2f} rows/s" if rate else "") + (", the rest kept from the interrupted run it resumed"
                                                          if summary["rows_explained_now"] < summary["rows"] else "")
             + f". A row's top channel and window hold its largest {esc(summary['explained_by'])}.</p>")
    found = summary["counterfactual_found_share"]
    rows = [[name, entry["rows"], max(entry["top_channel"], key=entry["top_channel"].get),
             max(entry["top_window"], key=entry["top_window"].get)]
            for name, entry in summary["per_predicted_class"].items()]
    body = (table(rows, ["predicted class", "rows", "most frequent top channel", "most frequent top window"],
                  numeric=(1,))
            + (f"<p>A counterfactual was found for {found:.0%} of the rows.</p>" if found is not None else "")
            + "<div class='figs'>" + figure("explained_rows.png", "Per predicted class, the share of rows whose "
                                            "largest evidence lies in each channel and each time window", wide=True)
            + "</div>")
    return section("every_row", body, intro)


def no_better_than_random(methods):
    """The attribution methods whose deletion curve does not beat the random ordering (checks.deletion_against_random)."""
    return [name for name, m in methods.items() if not m["deletion_auc_minus_random"]["better_than_random"]]


def sample_card(i, explained, figure, warnings):
    """warnings: figure kind ("gradcam", "attribution") -> what its caption must add ("" for nothing)."""
    confidence = explained["confidence"]
    if "true" in explained:
        ok = explained["true"] == explained["predicted"]
        verdict = "ok" if ok else "wrong"
        badge = f"<span class='badge {verdict}'>{'&#10003; correct' if ok else '&#10007; wrong'}</span> "
        truth = f"true class <b>{esc(explained['true'])}</b> &middot; "
    else:
        verdict, badge, truth = "", "", "no label &middot; "
    head = (f"<h3>{badge}Sample {i} <span class='muted'>{'test ' if 'true' in explained else ''}row "
            f"{explained['row']}</span></h3>"
            f"<p>{truth}predicted <b>{esc(explained['predicted'])}</b> "
            f"with probability <b>{confidence:.1%}</b> {meter(confidence)}</p>")
    figures = (figure(f"shap_sample_{i}.png", "SHAP values along each channel")
               + figure(f"gradcam_sample_{i}.png", "Grad-CAM of the last convolutional block" + warnings["gradcam"])
               + figure(f"attention_sample_{i}.png", "Self-attention weights per head", wide=True)
               + figure(f"attribution_sample_{i}.png", "Every attribution method for the predicted class, each "
                                                       "scaled to its largest |value|" + warnings["attribution"],
                        wide=True))
    return f"<article class='card {verdict}' id='sample-{i}'>{head}<div class='figs'>{figures}</div></article>"


def samples_section(metrics, config, figure):
    explained = metrics["explained"]
    correct = sum(e.get("true") == e["predicted"] for e in explained)
    rule = config.get("EXPLAIN_ROWS", "")
    chosen = ("the least confident rows" if rule == "least_confident" else "the rows EXPLAIN_ROWS names" if rule
              else "taken round-robin over the " + ("true" if metrics["labelled"] else "predicted")
              + " classes so that every class is shown")
    verdict = f"{correct} of them predicted correctly" if metrics["labelled"] else "the file has no labels"
    methods = metrics.get("attributions", {}).get("methods", {})
    signed = [name for name, m in methods.items() if m.get("signed")]
    unsigned = [name for name, m in methods.items() if m.get("signed") is False]
    intro = (f"<p>{len(explained)} rows, {chosen}; {verdict}. Each card shows the input series as black lines over colour "
             f"strips: for signed maps ({esc(', '.join(signed) or 'SHAP')}) <b>red</b> raises the class's logit and "
             "<b>blue</b> lowers it, white is zero"
             + (f"; {esc(', '.join(unsigned))} {'is' if len(unsigned) == 1 else 'are'} unsigned (white = none, red "
                "= most)" if unsigned else "") + ". Click a figure to see it at full size.</p>")
    unfaithful = no_better_than_random(methods)
    warnings = {"gradcam": f"; {base.NO_BETTER_THAN_RANDOM}" if metrics["gradcam"]["better_than_random"] is False
                else "",
                "attribution": f"; {', '.join(unfaithful)}: {base.NO_BETTER_THAN_RANDOM}" if unfaithful else ""}
    return section("samples", "".join(sample_card(i, e, figure, warnings) for i, e in enumerate(explained)), intro)


def shap_section(shap, figure):
    intro = (f"<p>Method <b>{esc(shap['method'])}</b>, explaining the <b>{esc(shap['explained_output'])}</b> of "
             f"{shap['num_explained']} test rows against a background of {shap['num_background']} training rows"
             + (f"; players are {shap['segments_per_channel']} time windows per channel"
                if "segments_per_channel" in shap else "") + ". Shapley values of a sample add up to "
             "f(x) &minus; E[f(background)]; the additivity error is how far they miss, relative to that "
             "difference (0 = exact).</p>")
    rows = [[shap["method"], number(shap["additivity_rel_error_median"]), number(shap["additivity_rel_error_max"]),
             number(shap.get("seconds"), 2)]]
    body = table(rows, ["method", "additivity error (median)", "additivity error (max)", "seconds"],
                 numeric=(1, 2, 3))
    if shap["additivity_rel_error_median"] > 0.01:
        body += (f"<p class='warn'>The values of <b>{esc(shap['method'])}</b> do not add up to the model's output: "
                 "read them as a rough saliency, not as Shapley values.</p>")
    if "comparison" in shap:
        body += "<h3>Every SHAP method, on the same samples and background</h3>" + table(
            [[row["method"], number(row["additivity_rel_error_median"]), number(row["additivity_rel_error_max"]),
              number(row["seconds"], 2)] for row in shap["comparison"]],
            ["method", "additivity error (median)", "additivity error (max)", "seconds"], numeric=(1, 2, 3))
    body += (figure("shap_summary_bar.png", "The most important channel x time windows, mean |SHAP| stacked by class",
                    wide=True)
             + figure("shap_summary_per_class.png", "Mean SHAP value per channel and time window, per class",
                      wide=True))
    return section("shap", body, intro)


def attention_section(attention):
    heads = attention["per_head"]
    steps = attention.get("sequence_steps")
    rows = [[h["head"], number(h["min"]), number(h["max"]), number(h["mean"]), number(h["focus"])] for h in heads]
    intro = ("<p>Self-attention weights over the explained samples"
             + (f", on the {steps} steps the LSTM sees (uniform weight 1/{steps} = {1 / steps:.3f})" if steps else "")
             + ". Focus is 0 for weights spread uniformly over the steps and 1 when every query attends to a "
             "single step.</p>")
    body = table(rows, ["head", "min", "max", "mean", "focus (0 uniform, 1 one-hot)"], numeric=(1, 2, 3, 4))
    if heads and max(h["focus"] for h in heads) < 0.05:
        body += ("<p class='note'>Every head spreads its weight almost uniformly: here attention says little about "
                 "which time steps matter; read the attribution maps instead.</p>")
    return section("attention", body, intro)


def prediction_difference_table(attributions) -> str:
    """CPD and CPP per method and fill value beside the random map's (metrics.json "prediction_difference"); "" when
    the run did not compute them (CPD_FRACTION = 0)."""
    settings = attributions.get("prediction_difference")
    if not settings:
        return ""
    control = attributions["random_control"]["prediction_difference"]
    fills = list(settings["fills"])

    def cells(values):
        def mark(better):
            return "&#10003;" if better else ""
        return [("html", f"{number(v['cpd'])} {mark(v['cpd'] > control[fill]['cpd'])} / {number(v['cpp'])} "
                         f"{mark(v['cpp'] < control[fill]['cpp'])}") for fill, v in ((f, values[f]) for f in fills)]

    rows = [[name, *cells(m["prediction_difference"])] for name, m in attributions["methods"].items()]
    rows.append(["random ordering (control)",
                 *[f"{number(control[f]['cpd'])} / {number(control[f]['cpp'])}" for f in fills]])
    note = ("<p class='note'><b>Cumulative prediction difference</b> (CPD, Jang et al. 2025): the "
            f"{settings['fraction']:.0%} most attributed features (by |attribution|; at most {settings['max_removals']} "
            "per sample) are removed one at a time, each set "
            "to the fill value, and the changes of the predicted probabilities (mean over the classes) are added up: "
            "a faithful map moves the prediction most (higher is better). <b>CPP</b> removes the least attributed "
            "first: the less it moves, the better. Unlike the deletion curve, no step removes many features at once, so "
            "features that push the class up and down cannot cancel. &#10003;: better than the random ordering. Fill "
            "values: " + "; ".join(f"<b>{esc(f)}</b> = {esc(words)}" for f, words in settings["fills"].items())
            + f" ({number(settings['seconds'], 2)} s for every method).</p>")
    return note + table(rows, ["method", *[f"CPD / CPP, {f} fill" for f in fills]], numeric=(), css=" class='total'")


def methods_section(attributions, figure):
    methods, control = attributions["methods"], attributions["random_control"]
    sanity = attributions["sanity"]
    threshold = sanity["threshold"]

    def verdict(value, reference, lower_is_better):
        better = value < reference if lower_is_better else value > reference
        return ("html", f"{number(value)} {'&#10003;' if better else '<span class=flag>not better than random</span>'}")

    def deletion_verdict(m):
        """Against the random ordering sample by sample (checks.deletion_against_random), not by the means alone."""
        low, high = m["deletion_auc_minus_random"]["interval_95"]
        mark = ("&#10003;" if m["deletion_auc_minus_random"]["better_than_random"]
                else "<span class=flag>no better than random</span>")
        return ("html", f"{number(m['deletion_auc'])} <span class='muted'>({number(low, 2)} to {number(high, 2)})"
                        f"</span> {mark}")

    rows = []
    for name, m in methods.items():
        flagged = m.get("insensitive_to_model")
        sanity_cell = ("html", "<span class='muted'>not checked</span>") if flagged is None else (
            ("html", "<span class='flag'>&#9888; insensitive to the model</span>") if flagged else "passes")
        rows.append([name, deletion_verdict(m),
                     verdict(m["insertion_auc"], control["insertion_auc"], False),
                     number(m.get("sanity_rank_correlation")), number(m.get("sanity_signed_rank_correlation")),
                     sanity_cell, number(m.get("seconds"), 2)])
    rows.append(["random ordering (control)", number(control["deletion_auc"]), number(control["insertion_auc"]),
                 "", "", "", ""])
    flagged = [name for name, m in methods.items() if m.get("insensitive_to_model")]
    unfaithful = no_better_than_random(methods)
    intro = (f"<p>All methods explain the <b>{esc(attributions['target'])}</b> of the same "
             f"{attributions['num_explained']} samples; the baseline is {esc(attributions['baseline'])}.</p>"
             "<p class='note'><b>Faithfulness.</b> Deletion sets the input's features to the baseline in the order of "
             "the map, most attributed first, and follows the predicted class's probability; a faithful map makes it "
             "fall fast (low area under the curve). Insertion restores them from the baseline (high area is better). "
             "The <b>random control</b> orders the features at random (deletion AUC "
             f"{number(control['deletion_auc'])}, insertion AUC {number(control['insertion_auc'])}): a method that "
             "does not beat it explains no better than chance. A deletion area is judged against the random "
             "ordering's on the same samples: in brackets, the 95 % interval of the mean per-sample difference "
             "(method minus random); it beats random only when the whole interval lies below zero."
             "<br><b>Sanity check</b> (Adebayo et al. 2018). The "
             "maps are recomputed on a copy of the model with randomized weights. A method is flagged <i>insensitive "
             "to the model</i> when its maps keep both their ranking and their sign there (rank correlations of "
             "|attribution| and of the signed map both "
             f"above {threshold}): it then shows the input, not what the model learned."
             + "".join(f" {esc(name)} is not checked: {esc(why)}."
                       for name, why in sanity.get("not_checked", {}).items())
             + "</p>")
    if flagged:
        intro += f"<p class='warn'>Flagged as insensitive to the model: <b>{esc(', '.join(flagged))}</b>.</p>"
    if unfaithful:
        intro += (f"<p class='warn'>Deletion curve {esc(base.NO_BETTER_THAN_RANDOM)}: "
                  f"<b>{esc(', '.join(unfaithful))}</b>.</p>")
    body = table(rows, ["method", "deletion AUC (lower is better; minus random)", "insertion AUC (higher is better)",
                        "sanity: rank corr. |map|", "sanity: rank corr. signed", "sanity verdict", "seconds"],
                 numeric=(1, 2, 3, 4, 6), css=" class='total'")
    body += prediction_difference_table(attributions)
    body += "<div class='figs'>" + "".join([
        figure("attribution_comparison.png", "Faithfulness, sanity and cost per method", wide=True),
        figure("attribution_faithfulness.png", "Deletion and insertion curves, mean over the explained samples",
               wide=True),
        figure("attribution_overlay.png", "|attribution| over time per method, explained sample 0", wide=True),
        figure("attribution_regions.png", "Share of attribution per channel and time window", wide=True),
        figure("attribution_segments.png", "Share of attribution per channel and named segment", wide=True)]) + "</div>"
    return section("methods", body, intro)


def counterfactuals_section(entries, summary, figure):
    found = [e for e in entries if e["found"]]
    median = summary["median_share_of_steps_changed"]
    intro = (f"<p>For each explained sample, the smallest change that makes the model predict another class "
             f"(target: {esc(summary['target'])}). {esc(summary['method'])} ({esc(summary['guides'])} to choose the "
             f"guide from; at most {summary['budget']:,} model evaluations per sample). Every counterfactual was run "
             "through the model again: the class shown is the model's on the stored series. Distances are in "
             f"normalized units.</p><p><b>{len(found)} of {len(entries)}</b> found"
             + (f"; median share of steps changed {median:.0%}" if median is not None else "") + ".</p>")
    rows = []
    for e in entries:
        if e["found"]:
            start, end = e["changed_steps"]
            change = [f"{', '.join(e['changed_channels'])}: steps {start}-{end - 1}", number(e["share_of_steps_changed"], 2),
                      number(e["l1"], 3), number(e["l2"], 3), number(e["probability_after"], 2), e["predicted"]]
        else:
            change = [("html", f"<span class='flag'>none found</span> <span class='muted'>{esc(e['reason'])}</span>"),
                      "", "", "", "", ""]
        rows.append([e["row"], e["original"], e["target"], number(e["probability_before"], 2), *change])
    body = table(rows, ["row", "predicted", "target", "p(target) before", "changed", "share of steps", "L1", "L2",
                        "p(target) after", "model says"], numeric=(3, 5, 6, 7, 8))
    body += "<div class='figs'>" + "".join(
        figure(f"counterfactual_sample_{i}.png", f"Counterfactual of explained sample {i} (test row {e['row']}) toward "
                                                 f"{e['target']}", wide=True) for i, e in enumerate(entries)) + "</div>"
    return section("counterfactuals", body, intro)


def misclassified_section(misclassified, figure):
    count, total = misclassified["count"], misclassified["of"]
    if not count:
        return section("misclassified", f"<p>None: every one of the {total} test rows was classified correctly.</p>")
    body = f"<p>{count} of {total} test rows were misclassified.</p>"
    if misclassified["confused_pairs"]:
        body += "<h3>Most confused class pairs</h3>" + table(
            [[p["true"], p["predicted"], p["count"]] for p in misclassified["confused_pairs"]],
            ["true class", "predicted as", "test rows"], numeric=(2,))
    shown = misclassified["shown"]
    if shown:
        body += (f"<h3>The {len(shown)} most confident mistakes</h3><p>Integrated gradients for the predicted and for "
                 "the true class, on one colour scale: where does the evidence for the wrong class come from?</p>")
        for k, s in enumerate(shown):
            body += (f"<article class='card wrong' id='misclassified-{k}'><h3><span class='badge wrong'>&#10007; "
                     f"wrong</span> Test row {s['row']}</h3><p>true class <b>{esc(s['true'])}</b> &middot; predicted "
                     f"<b>{esc(s['predicted'])}</b> with probability <b>{s['confidence']:.1%}</b> "
                     f"{meter(s['confidence'])} (true class: {s['true_class_probability']:.1%})</p>"
                     + figure(f"misclassified_{k}.png", "Integrated gradients for the predicted and the true class",
                              wide=True) + "</article>")
    return section("misclassified", body)


def settings_section(config):
    items = [(name, repr(value)) for name, value in config.items()]
    half = -(-len(items) // 2)
    tables = "".join(f"<div>{table(part, ['constant', 'value'])}</div>" for part in (items[:half], items[half:]))
    return section("settings", f"<div class='row'>{tables}</div>",
                   "<p>Every constant of the run; set any of them as <code>--lower_case_name=VALUE</code> "
                   "(<code>python train_explain.py --help</code> lists their meanings).</p>")


def package_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def versions_section(metrics):
    versions = [["train_explain", metrics.get("version", "?")], ["python", platform.python_version()]]
    versions += [[name, package_version(name)] for name in VERSIONED]
    versions += [["platform", platform.platform()], ["device", metrics.get("device", "?")],
                 ["processes", metrics.get("world_size", 1)]]
    timings = dict(metrics["timings_s"])
    total = timings.pop("total", None)
    label = "total"
    if total is None:
        total, label = sum(timings.values()), "total before writing this page"
    rows = [[phase, ("html", f"{seconds:.2f}"), ("html", meter(seconds / total if total else 0))]
            for phase, seconds in timings.items()]
    rows.append([label, f"{total:.2f}", ""])
    return section("versions", "<div class='row'><div><h3>Versions</h3>" + table(versions, ["component", "version"])
                   + "</div><div><h3>Seconds per phase</h3>" + table(rows, ["phase", "seconds", "share"],
                                                                     numeric=(1,), css=" class='total'")
                   + "</div></div>")


# -----------------------------------------------------------------------------
def data_summary(tables, predicted, figure_dir, per_class=3):
    """Queue data_summary.png: the first `per_class` series of each class of the training table, or of each
    predicted class of the explained file when the training file is not at hand. Only those rows are handed to
    the drawing (a training table may be large)."""
    train, test = tables
    shown = train if train is not None else test  # without training, the explained file's first part
    y = shown.y if shown.labelled else predicted
    counts = np.bincount(y, minlength=len(shown.class_names))
    y = y[:len(shown.X)]
    rows = np.sort(np.concatenate([np.flatnonzero(y == k)[:per_class] for k in range(len(shown.class_names))]))
    summary_figures.example_series_figure(shown.X[rows], y[rows], shown.class_names, shown.channel_names,
                                os.path.join(figure_dir, "data_summary.png"), per_class=per_class,
                                feature_names=shown.feature_names,
                                source="Training data" if train is not None else "The explained file",
                                grouping="" if shown.labelled else "predicted ", counts=counts)


def write_report(figure_dir, metrics, config, history, tables, path, train_counts=None, predicted=None):
    """Write report.html to `path` from the run's metrics (metrics.json's content, "explained" included), its
    settings, the training history (None when training was skipped), the (train, test) tables (train is None
    when a checkpoint was reused) and the files in figure_dir (its figures and classification_report.txt when
    the file had labels). train_counts: training rows per class (the checkpoint's; None for one of an earlier
    version); predicted:
    the predicted class of every row of the explained file. figure_dir holds data_summary.png (`data_summary`)."""
    train, test = tables
    labelled = metrics["labelled"]
    figure = Figures(figure_dir)
    attributions = metrics.get("attributions")
    written = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    explained_file = "tested on" if labelled else "predicted and explained (no labels)"
    header = ("<header><h1>train_explain report</h1><p class='muted'>"
              + (f"Trained on <code>{esc(config['TRAIN_CSV_PATH'])}</code>, " if train is not None else
                 "A reused checkpoint, ")
              + f"{explained_file} <code>{esc(config['TEST_CSV_PATH'])}</code>; written {written}.</p>"
              "<div class='stats'>"
              + (stat(number(metrics["test_accuracy"]), "test accuracy")
                 + accuracy_stats(metrics["accuracy_check"])
                 + stat(number(metrics["test_macro_f1"]), "test macro F1") if labelled
                 else stat("none", "labels in the file"))
              + stat(f"{int(sum(train_counts)) if train_counts is not None else '?'} / {metrics['predictions']['rows']}",
                     "training / explained-file rows")
              + stat(f"{test.X.shape[1]} &times; {test.X.shape[2]}", "channels × time steps")
              + stat(len(test.class_names), "classes")
              + stat(f"{metrics['num_parameters']:,}", "parameters" if metrics.get("networks", 1) == 1
                     else f"parameters in {metrics['networks']} networks (their mean logits)")
              + stat(metrics.get("best_epoch", "?"), "kept epoch")
              + stat(f"{sum(v for k, v in metrics['timings_s'].items() if k != 'total'):.0f} s", "run time")
              + "</div>" + accuracy_box(metrics["accuracy_check"])
              + baseline_note(metrics.get("baseline"), metrics["test_accuracy"])
              + skipped_note(metrics.get("explanations_skipped")) + "</header>")
    if labelled:
        with open(os.path.join(figure_dir, "classification_report.txt"), encoding="utf-8") as f:
            evaluation = evaluation_section(metrics, f.read(), figure)
    else:
        evaluation = predictions_section(metrics["predictions"])
    parts = [data_section(train_counts, test, metrics["predictions"], figure, metrics.get("series")), training_section(metrics, history, figure), evaluation,
             *([trust_section(metrics["trust"], metrics["explained"], figure)] if "trust" in metrics else []),
             *([global_section(metrics["global"], figure)] if "global" in metrics else []),
             *([every_row_section(metrics["explained_in_parts"], figure)] if "explained_in_parts" in metrics else [])]
    if metrics["explained"]:
        parts += [samples_section(metrics, config, figure), shap_section(metrics["shap"], figure),
                  attention_section(metrics["attention"])]
    if attributions:
        parts.append(methods_section(attributions, figure))
        if "misclassified" in attributions:
            parts.append(misclassified_section(attributions["misclassified"], figure))
    if "counterfactuals" in metrics:
        parts.append(counterfactuals_section(metrics["counterfactuals"], metrics["counterfactual_summary"], figure))
    if figure.rest():
        parts.append("<section id='other'><h2>Other figures</h2><div class='figs'>"
                     + "".join(figure(name, name) for name in figure.rest()) + "</div></section>")
    parts += [settings_section(config), versions_section(metrics)]
    body = "\n".join(numbered(parts))
    nav = "<nav><b>Contents</b><ol>" + "".join(f"<li><a href='#{key}'>{esc(title)}</a></li>" for key, title in SECTIONS
                                               if f"<section id='{key}'>" in body) + "</ol></nav>"
    title = (f"test accuracy {number(metrics['test_accuracy'])}" if labelled else "predictions without labels")
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>train_explain report: {esc(os.path.basename(str(config['TEST_CSV_PATH'])))}, {title}</title>"
            f"<style>{CSS}</style></head><body>" + header + nav + body + f"<script>{SCRIPT}</script></body></html>")
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)

