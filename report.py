"""report.html: one self-contained page (every figure inlined as a data URI) telling the run's story
in the order the pipeline ran."""
import base64
import html
import os
import platform

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; font-size: .92em; }
td, th { border: 1px solid #ddd; padding: .25em .6em; text-align: left; }
th { background: #f4f4f4; }
img { max-width: 100%; height: auto; display: block; margin: .5em 0; border: 1px solid #eee; }
pre { background: #f7f7f7; padding: .6em; overflow-x: auto; }
.card { border: 1px solid #ccc; border-radius: 6px; padding: .6em 1em; margin: 1em 0; }
.ok { border-left: 6px solid #1a9850; } .wrong { border-left: 6px solid #d73027; }
.warn { background: #fff4e5; border: 1px solid #f0ad4e; padding: .5em 1em; }
@media print { img { page-break-inside: avoid; } .card { page-break-inside: avoid; } }
"""


def image(path, alt):
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def table(rows, header):
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def number(value):
    return f"{value:.4g}" if isinstance(value, float) else value


def write_report(figure_dir, metrics, config, classification_report, history, tables, path):
    train, test = tables
    figures = sorted(f for f in os.listdir(figure_dir) if f.endswith(".png"))
    shown = set()

    def figure(name, alt):
        if name not in figures:
            return ""
        shown.add(name)
        return image(os.path.join(figure_dir, name), alt)

    shap = metrics["shap"]
    parts = [f"<h1>train_explain report</h1><p>Trained on <code>{html.escape(str(config['TRAIN_CSV_PATH']))}</code>, "
             f"tested on <code>{html.escape(str(config['TEST_CSV_PATH']))}</code>: test accuracy "
             f"<b>{metrics['test_accuracy']:.3f}</b>, macro F1 <b>{metrics['test_macro_f1']:.3f}</b>.</p>"]

    counts = [(name, int((train.y == k).sum()), int((test.y == k).sum())) for k, name in enumerate(train.class_names)]
    parts.append("<h2>1. Data</h2>" + table(counts, ["class", "training samples", "test samples"]) +
                 f"<p>{train.X.shape[1]} channel(s) ({html.escape(', '.join(train.channel_names))}) x "
                 f"{train.X.shape[2]} time steps; normalized per channel with training statistics.</p>")

    parts.append("<h2>2. Training</h2>")
    if history:
        parts.append(figure("train_plots_hybrid_explained.png", "training curves") +
                     f"<p>Kept the checkpoint of epoch {metrics['best_epoch']} (validation accuracy "
                     f"{metrics['val_accuracy']:.3f}) out of {len(history)} epochs run.</p>")
    else:
        parts.append("<p>No training history found (the checkpoint was reused).</p>")

    parts.append("<h2>3. Test evaluation</h2>" + figure("confusion_matrix.png", "confusion matrix") +
                 f"<pre>{html.escape(classification_report)}</pre>")

    parts.append("<h2>4. SHAP</h2>" + table(
        [[shap["method"], shap["num_background"], shap["num_explained"], number(shap["additivity_rel_error_median"]),
          number(shap["additivity_rel_error_max"]), number(shap["seconds"])]],
        ["method", "background rows", "explained samples", "additivity error (median)", "additivity error (max)",
         "seconds"]))
    if shap["additivity_rel_error_median"] > 0.01:
        parts.append(f'<p class="warn">The SHAP values of method <b>{html.escape(shap["method"])}</b> do not add up '
                     "to f(x) - E[f(background)]: read them as a rough saliency, not as Shapley values.</p>")
    if "comparison" in shap:
        parts.append("<p>Every method run, on the same samples and background:</p>" + table(
            [[row["method"], number(row["additivity_rel_error_median"]), number(row["additivity_rel_error_max"]),
              number(row["seconds"])] for row in shap["comparison"]],
            ["method", "additivity error (median)", "additivity error (max)", "seconds"]))
    parts.append(figure("shap_summary_bar.png", "SHAP summary") + figure("shap_summary_per_class.png",
                                                                          "SHAP per class"))

    parts.append("<h2>5. Explained samples</h2><p>Per sample: SHAP values along each channel, Grad-CAM of the last "
                 "convolutional block, and the attention weights per head.</p>")
    for i, row in enumerate(metrics["explained_rows"]):
        parts.append(f'<div class="card"><h3>Sample {i} (test row {row})</h3>' +
                     figure(f"shap_sample_{i}.png", f"SHAP sample {i}") +
                     figure(f"gradcam_sample_{i}.png", f"Grad-CAM sample {i}") +
                     figure(f"attention_sample_{i}.png", f"attention sample {i}") + "</div>")
    heads = metrics["attention"]["per_head"]
    parts.append("<h3>Attention statistics (explained samples)</h3>" + table(
        [[h["head"], number(h["min"]), number(h["max"]), number(h["mean"]), number(h["focus"])] for h in heads],
        ["head", "min", "max", "mean", "focus (0 uniform, 1 one-hot)"]))

    rest = [f for f in figures if f not in shown]
    if rest:
        parts.append("<h2>Other figures</h2>" + "".join(figure(f, f) for f in rest))

    parts.append("<h2>Run settings</h2>" + table(sorted((k, repr(v)) for k, v in config.items()), ["constant", "value"]))
    import numpy
    import torch
    parts.append("<h2>Versions and timings</h2>" + table(
        [["python", platform.python_version()], ["torch", torch.__version__], ["numpy", numpy.__version__],
         ["device", metrics["device"]]], ["component", "version"]) +
        table([(k, f"{v:.2f}") for k, v in metrics["timings_s"].items()], ["phase", "seconds"]))

    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>train_explain report</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>")
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
