"""Pictures: an evaluation's confusion matrix, class distribution, per-class IoU and prediction panels; a
scan's damage overlay and palette mask. One blend of damage colours over an image (blend_damage) serves both."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from heritage_seg.core.files import write_file_atomic  # noqa: E402
from heritage_seg.data.labels import LabelMap  # noqa: E402
from heritage_seg.reporting.html import data_uri  # noqa: E402


def figure_uri(fig) -> str:
    """A matplotlib figure as an embedded PNG for a self-contained page (the figure is closed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return data_uri(buffer.getvalue())


def save_figure(fig, path: Path) -> None:
    write_file_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
    plt.close(fig)


def confusion_figure(confmat, names: list[str], title: str, compact: bool = False):
    """Row-normalised confusion matrix (rows = truth): evaluate's full-size figure with the values written in
    and a colour bar, or (`compact`) the small one the study page shows several of side by side."""
    cm = np.asarray(confmat, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    normed = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    fig, ax = plt.subplots(figsize=(5.2, 4.8) if compact else (9, 8))
    im = ax.imshow(normed, cmap="Blues", vmin=0, vmax=1)
    ticks = {"fontsize": 6} if compact else {}
    ax.set_xticks(range(len(names)), names, rotation=70 if compact else 60, ha="right", **ticks)
    ax.set_yticks(range(len(names)), names, **ticks)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title(title, **({"fontsize": 9} if compact else {}))
    if not compact:
        for i in range(len(names)):
            for j in range(len(names)):
                if normed[i, j] >= 0.01:
                    ax.text(
                        j,
                        i,
                        f"{normed[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if normed[i, j] > 0.5 else "black",
                    )
        fig.colorbar(im, ax=ax, fraction=0.046)
    return fig


def plot_confusion_matrix(payload: dict[str, Any], path: Path) -> None:
    save_figure(
        confusion_figure(payload["confusion_matrix"], payload["classes"], "Confusion matrix (row-normalised)"), path
    )


def plot_class_distribution(payload: dict[str, Any], path: Path) -> None:
    names = payload["classes"]
    gt = [payload["per_class"][n]["gt_pixels"] for n in names]
    pred = [payload["per_class"][n]["pred_pixels"] for n in names]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.bar(x - 0.2, np.maximum(gt, 0.5), 0.4, label="ground truth")
    ax.bar(x + 0.2, np.maximum(pred, 0.5), 0.4, label="prediction")
    ax.set_yscale("log")
    ax.set_xticks(x, names, rotation=60, ha="right")
    ax.set_ylabel("pixels (log scale)")
    ax.legend()
    ax.set_title("Pixels per class")
    save_figure(fig, path)


def plot_iou_per_class(payload: dict[str, Any], path: Path) -> None:
    names = payload["classes"]
    iou = [payload["per_class"][n]["iou"] for n in names]
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.bar(range(len(names)), [v if v is not None else 0 for v in iou], color="tab:green")
    for i, v in enumerate(iou):
        ax.text(i, (v or 0) + 0.01, "n/a" if v is None else f"{v:.2f}", ha="center", fontsize=7)
    if payload["miou"] is not None:
        ax.axhline(payload["miou"], color="black", linestyle="--", label=f"mIoU {payload['miou']:.3f}")
        ax.legend()
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("IoU")
    ax.set_title("IoU per class (n/a: absent from ground truth and prediction)")
    save_figure(fig, path)


def plot_reliability(payload: dict[str, Any], path: Path) -> None:
    """Left: accuracy against mean confidence per confidence bin (the diagonal is a calibrated model), with ECE.
    Right, where an uncertainty map was made: the error rate per uncertainty bin (it should rise)."""
    by_uncertainty = payload.get("error_by_uncertainty")
    fig, axes = plt.subplots(1, 2 if by_uncertainty else 1, figsize=(10 if by_uncertainty else 5, 4.2), squeeze=False)
    ax = axes[0][0]
    bins = [b for b in payload["reliability"] if b["pixels"]]
    width = 1 / len(payload["reliability"])
    lowers, accuracy = [b["lower"] for b in bins], [b["accuracy"] for b in bins]
    ax.bar(lowers, accuracy, width=width, align="edge", color="tab:blue", edgecolor="white", label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="calibrated")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="tab:orange", markersize=3)
    calibrated = payload.get("calibration")
    if calibrated:  # evaluate calibrate=true: the same bins with the fitted temperature
        after = [b for b in calibrated["reliability_after"] if b["pixels"]]
        label = f"with temperature {calibrated['temperature']:.2f} (ECE {calibrated['ece_after']:.3f})"
        xs, ys = [b["confidence"] for b in after], [b["accuracy"] for b in after]
        ax.plot(xs, ys, "s-", color="tab:green", markersize=3, label=label)
    ece = payload.get("ece")
    ax.set_title(f"Reliability of the softmax (ECE {ece:.3f})" if ece is not None else "Reliability of the softmax")
    ax.set_xlabel("confidence (max class probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    if by_uncertainty:
        ax = axes[0][1]
        filled = [b for b in by_uncertainty if b["pixels"]]
        lowers, errors = [b["lower"] for b in filled], [b["error_rate"] for b in filled]
        ax.bar(lowers, errors, width=1 / len(by_uncertainty), align="edge", color="tab:red", edgecolor="white")
        for b in filled:
            ax.text(b["lower"] + 0.05, b["error_rate"] + 0.01, f"{b['pixels']:,}", ha="center", fontsize=6)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("uncertainty (views' disagreement), pixels per bin above the bars")
        ax.set_ylabel("error rate")
        ax.set_title("Error rate per uncertainty bin")
    save_figure(fig, path)


def colorize(mask: np.ndarray, labels: LabelMap) -> np.ndarray:
    return labels.palette()[mask]


def blend_damage(
    image: np.ndarray, mask: np.ndarray, confidence: np.ndarray, labels: LabelMap, alpha: float, rows: int = 256
) -> np.ndarray:
    """Damage colours over the image, opacity = alpha x confidence; the clean class and pixels outside the
    object (ignore value) stay as they are. uint8 in, uint8 out, in strips of `rows` with 16-bit integer
    arithmetic: a few bytes per pixel of the strip, not float copies of a whole 100-Mpx scan."""
    out = np.empty_like(image)
    palette = labels.palette()
    scale = int(round(alpha * 256))
    for top in range(0, image.shape[0], rows):
        m = mask[top : top + rows]
        damaged = (m != labels.clean_index) & (m < labels.num_classes)
        a = ((confidence[top : top + rows].astype(np.uint16) * scale) >> 8) * damaged  # 0..255
        a = a[..., None]
        strip = image[top : top + rows].astype(np.uint16) * (255 - a) + palette[m].astype(np.uint16) * a
        out[top : top + rows] = ((strip + 127) // 255).astype(np.uint8)
    return out


def overlay_figure(
    image: np.ndarray, pred: np.ndarray, confidence: np.ndarray, labels: LabelMap, path: Path, title: str = ""
) -> None:
    """Prediction colours over the image, opacity = the model's confidence; legend of the classes shown."""
    blend = blend_damage(image, pred, confidence, labels, alpha=0.6)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5), gridspec_kw={"width_ratios": [1, 1]})
    axes[0].imshow(blend)
    axes[0].set_title(title or "prediction over image")
    conf = axes[1].imshow(confidence, cmap="magma", vmin=0, vmax=255)
    axes[1].set_title("confidence (max probability)")
    fig.colorbar(conf, ax=axes[1], fraction=0.046, ticks=[0, 127, 255]).ax.set_yticklabels(["0", "0.5", "1"])
    for ax in axes:
        ax.axis("off")
    present = [c for c in np.unique(pred) if c < labels.num_classes]
    handles = [Patch(color=np.array(labels.colors[c]) / 255, label=labels.names[c]) for c in present]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8)
    save_figure(fig, path)


def scan_overlay(
    image: np.ndarray, mask: np.ndarray, confidence: np.ndarray, labels: LabelMap, alpha: float, present: list[int]
) -> Image.Image:
    """Damage colours over the scan (the clean class stays transparent; opacity follows confidence), with a
    legend of the damage classes `present` (from the scan's report, which has counted them already)."""
    blended = Image.fromarray(blend_damage(image, mask, confidence, labels, alpha))
    if present:
        _draw_legend(blended, [(labels.names[c], labels.colors[c]) for c in present])
    return blended


def _draw_legend(img: Image.Image, entries: list[tuple[str, tuple[int, int, int]]]) -> None:
    size = max(12, min(img.size) // 40)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    draw = ImageDraw.Draw(img)
    pad, box = size // 2, size
    width = max(draw.textlength(name, font=font) for name, _ in entries) + box + 3 * pad
    height = len(entries) * (box + pad) + pad
    draw.rectangle([pad, pad, pad + width, pad + height], fill=(255, 255, 255))
    for i, (name, colour) in enumerate(entries):
        y = 2 * pad + i * (box + pad)
        draw.rectangle([2 * pad, y, 2 * pad + box, y + box], fill=colour, outline=(0, 0, 0))
        draw.text((3 * pad + box, y), name, fill=(0, 0, 0), font=font)


def palette_mask(mask: np.ndarray, labels: LabelMap) -> Image.Image:
    """Pixel values ARE the class ids; the embedded palette just makes the file viewable."""
    img = Image.fromarray(mask, mode="L").convert("P")
    img.putpalette(labels.palette().reshape(-1).tolist())
    return img
