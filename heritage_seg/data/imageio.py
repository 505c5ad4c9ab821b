"""Decoding images and masks with errors that name the file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")

# ARTeFACT scans reach ~12,300 px a side (151 Mpx), above PIL's decompression-bomb guard.
# These are the user's own trusted files, so the guard is lifted.
Image.MAX_IMAGE_PIXELS = None


def open_image(source: str | Path | bytes, name: str, orient: bool = True) -> Image.Image:
    """Open and fully decode an image; `name` is what error messages call it. `orient`: turn it as its EXIF
    Orientation says (phone photos), so it is read as every viewer shows it; masks are read as stored."""
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        img.load()
        if orient:
            img = ImageOps.exif_transpose(img)
    except FileNotFoundError:
        raise FileNotFoundError(f"{name}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"{name}: cannot decode image ({err}). Is the file corrupt or truncated?") from err
    return img


def to_rgb(img: Image.Image, name: str) -> Image.Image:
    """RGB uint8 from the modes scans come in: 16-bit and float greyscale are rescaled, alpha dropped."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        peak = float(np.nanmax(arr)) if arr.size else 0.0
        if img.mode == "F" and peak <= 1.0:  # float images scaled to [0, 1]
            hi = 1.0
        else:
            hi = 65535.0 if img.mode.startswith("I;16") or peak > 255 else 255.0
        arr = np.nan_to_num(arr)
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode in ("L", "LA", "P", "PA", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "1"):
        return img.convert("RGB")
    raise ValueError(f"{name}: unsupported image mode '{img.mode}'; convert it to 8-bit RGB first")


def object_mask(img: Image.Image) -> np.ndarray | None:
    """Where a cut-out (RGBA, LA, PA or a transparent palette) shows the object: alpha > 0. None: no alpha."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        alpha = np.asarray(img.getchannel("A"))
        return alpha > 0 if (alpha == 0).any() else None
    return None


def raw_mask_array(img: Image.Image, name: str) -> np.ndarray:
    """The raw single-channel mask values as uint8 (palette masks give their indices)."""
    if img.mode in ("L", "P"):
        return np.asarray(img, dtype=np.uint8)
    if img.mode in ("I", "I;16", "I;16B", "I;16L"):
        arr = np.asarray(img)
        if arr.max() > 255:
            bad = sorted(int(v) for v in np.unique(arr[arr > 255])[:10])
            raise ValueError(f"{name}: mask values {bad} are not in the label map (raw values must be 0..255)")
        return arr.astype(np.uint8)
    raise ValueError(
        f"{name}: mask has mode '{img.mode}' ({len(img.getbands())} channels); heritage_seg reads single-channel "
        "class-value masks (ARTeFACT's `annotation`, not the colour `annotation_rgb`)"
    )


def list_inputs(path: Path, option: str = "input") -> list[Path]:
    """One image, or the images of a folder (not its subfolders), sorted: what predict and select read."""
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not files:
            raise FileNotFoundError(f"{option}={path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
        return files
    raise FileNotFoundError(f"{option}={path}: no such file or folder")
