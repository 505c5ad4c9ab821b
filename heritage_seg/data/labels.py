"""The label map, read from `conf/labels/*.yaml`: class names, colours, raw mask value -> class id, which
class means "no damage" (`clean`), so predict's damage statistics and overlays need no class hard-coded, and the
optional coarse `groups:` of damage classes (the coarse metrics and the multi-task heads read them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


def _hex_to_rgb(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    if len(color) != 6:
        raise ValueError(f"label map: colour '#{color}' is not a #RRGGBB value")
    return tuple(int(color[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]


@dataclass(frozen=True)
class LabelMap:
    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    raw_values: tuple[int, ...]
    ignore_index: int
    ignore_raw: tuple[int, ...]
    ignore_color: tuple[int, int, int]
    clean_index: int
    groups: tuple[tuple[str, tuple[int, ...]], ...] = ()  # (group name, its class ids), in the file's order

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], source: str = "label map") -> LabelMap:
        """`source` names where `cfg` came from (a file, a checkpoint) in every error."""
        try:
            return cls._from_config(cfg)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None

    @classmethod
    def _from_config(cls, cfg: Mapping[str, Any]) -> LabelMap:
        classes: Sequence[Mapping[str, Any]] = cfg["classes"]
        names = tuple(str(c["name"]) for c in classes)
        raw = tuple(int(c["raw"]) for c in classes)
        ignore_raw = tuple(int(v) for v in cfg.get("ignore_raw", []))
        ignore_index = int(cfg["ignore_index"])
        if len(set(raw)) != len(raw) or set(raw) & set(ignore_raw):
            raise ValueError(f"label map: raw values must be unique and not ignored, got {raw} / ignore {ignore_raw}")
        if not 0 <= ignore_index <= 255 or ignore_index < len(classes):
            raise ValueError(f"label map: ignore_index {ignore_index} must be in [{len(classes)}, 255]")
        if any(not 0 <= v <= 255 for v in raw + ignore_raw):
            raise ValueError("label map: raw mask values must fit in uint8 (0..255)")
        if len(classes) < 2:
            raise ValueError(f"label map: needs at least 2 classes (the clean class and a damage type), got {names}")
        if len(set(names)) != len(names):
            raise ValueError(f"label map: class names must be unique, got {names}")
        # checkpoints written before `clean` existed hold the ARTeFACT map, whose clean class is "Clean"
        clean = str(cfg.get("clean") or ("Clean" if "Clean" in names else ""))
        if clean not in names:
            raise ValueError(
                f"label map: `clean: {clean or '<missing>'}` must name the class that means no damage, "
                f"one of {list(names)}"
            )
        return cls(
            names=names,
            colors=tuple(_hex_to_rgb(str(c["color"])) for c in classes),
            raw_values=raw,
            ignore_index=ignore_index,
            ignore_raw=ignore_raw,
            ignore_color=_hex_to_rgb(str(cfg.get("ignore_color", "#000000"))),
            clean_index=names.index(clean),
            groups=_groups(cfg.get("groups") or {}, names, clean),
        )

    OTHER_DAMAGE: ClassVar[str] = "Other damage"  # the coarse class of damage classes no group names

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def clean_name(self) -> str:
        return self.names[self.clean_index]

    def damage_ids(self) -> list[int]:
        return [c for c in range(self.num_classes) if c != self.clean_index]

    def binary_lookup(self) -> np.ndarray:
        """Class id -> 0 (the clean class) or 1 (any damage): the damage-vs-clean task."""
        return (np.arange(self.num_classes) != self.clean_index).astype(np.int64)

    @property
    def coarse_names(self) -> tuple[str, ...]:
        """The coarse classes: the clean class, then those of `coarse_members`. Empty when the map has no groups."""
        return (self.clean_name, *self.coarse_members()) if self.groups else ()

    def coarse_members(self) -> dict[str, list[str]]:
        """The damage classes of each coarse class: each group's, then "Other damage" for the damage classes no
        group names (only if there are any)."""
        members = self.groups_by_name()
        grouped = {c for _, ids in self.groups for c in ids}
        ungrouped = [self.names[c] for c in self.damage_ids() if c not in grouped]
        if self.groups and ungrouped:
            members[self.OTHER_DAMAGE] = ungrouped
        return members

    def coarse_lookup(self) -> np.ndarray:
        """Class id -> coarse class id (the index in `coarse_names`); only for a map with groups."""
        if not self.groups:
            raise ValueError("label map: no `groups:`, so there are no coarse classes")
        table = np.full(self.num_classes, len(self.groups) + 1, dtype=np.int64)  # "Other damage"
        table[self.clean_index] = 0
        for g, (_, ids) in enumerate(self.groups, start=1):
            table[list(ids)] = g
        return table

    def lookup_table(self) -> np.ndarray:
        """256-entry table raw value -> class id; unknown raw values map to -1 so they can be reported."""
        table = np.full(256, -1, dtype=np.int16)
        for class_id, raw in enumerate(self.raw_values):
            table[raw] = class_id
        for raw in self.ignore_raw:
            table[raw] = self.ignore_index
        return table

    def encode(self, raw_mask: np.ndarray, source: str = "mask") -> np.ndarray:
        """Map a raw uint8 mask to class ids (uint8, ignore pixels = ignore_index)."""
        mapped = self.lookup_table()[raw_mask]
        if (mapped < 0).any():
            bad = sorted(int(v) for v in np.unique(raw_mask[mapped < 0]))
            raise ValueError(
                f"{source}: mask values {bad} are not in the label map (known raw values: "
                f"{sorted(self.raw_values)} + ignore {list(self.ignore_raw)}). "
                "Fix the mask or correct conf/labels/*.yaml."
            )
        return mapped.astype(np.uint8)

    def palette(self) -> np.ndarray:
        """(256, 3) uint8 colour table indexed by class id; ignore pixels get ignore_color."""
        pal = np.zeros((256, 3), dtype=np.uint8)
        pal[: self.num_classes] = np.array(self.colors, dtype=np.uint8)
        pal[self.ignore_index] = self.ignore_color
        return pal

    def groups_by_name(self) -> dict[str, list[str]]:
        return {name: [self.names[c] for c in ids] for name, ids in self.groups}

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "raw_values": list(self.raw_values),
            "ignore_index": self.ignore_index,
        }


def _groups(raw: Any, names: tuple[str, ...], clean: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """`groups: {group name: [class names]}`: each damage class in at most one group, the clean class in none (it
    is the coarse task's own class)."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"`groups:` must map each group name to a list of class names, got {raw!r}")
    out, seen = [], {}
    for group, members in raw.items():
        if isinstance(members, str) or not isinstance(members, Sequence) or not members:
            raise ValueError(f"group '{group}' must list one or more class names, got {members!r}")
        if str(group) in (clean, LabelMap.OTHER_DAMAGE):
            raise ValueError(f"group '{group}': the name is taken (the clean class / the ungrouped damage)")
        ids = []
        for member in map(str, members):
            if member not in names:
                raise ValueError(f"group '{group}' names '{member}', which is not a class of the map ({list(names)})")
            if member == clean:
                raise ValueError(
                    f"group '{group}' names the clean class '{clean}': it is a coarse class of its own; group "
                    "damage classes only"
                )
            if member in seen:
                raise ValueError(f"class '{member}' is in two groups ('{seen[member]}' and '{group}'); pick one")
            seen[member] = str(group)
            ids.append(names.index(member))
        out.append((str(group), tuple(ids)))
    return tuple(out)
