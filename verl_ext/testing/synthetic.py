"""Synthetic chest X-ray studies: patients, studies, images and reports, and writers for each dataset's layout.

Nothing here is real data. Everything is deterministic for a given seed.

Object API (the part other code uses)::

    from verl_ext.testing.synthetic import generate_patients
    patients = generate_patients(8, seed=0, image_size=128)
    for patient in patients:
        for study in patient.studies:           # chronological
            study.findings                       # FINDINGS text (the target)
            study.indication, study.technique, study.comparison, study.impression
            study.labels                         # {"cardiomegaly": 1, "pleural_effusion": 0, ...} 1/0/-1
            for image in study.images:
                image.view                       # "PA", "AP", "LATERAL", "LL", ...
                image.render(128)                # PIL grey-scale image whose features follow study.labels

* `generate_patients` draws patients with 1..N studies each (dates and times, patient-disjoint splits), CheXpert
  conditions that persist and evolve between a patient's studies, report sections written from templates with
  negations ("No pleural effusion.") and uncertainty ("Possible ..."), and frontal/lateral images;
* `render_image` draws a procedural radiograph: dark lungs, a heart silhouette (wider with cardiomegaly), blunted
  costophrenic angles and a meniscus (effusion), patchy opacity (consolidation / pneumonia), perihilar haze (edema),
  a dark apical rim without markings (pneumothorax), band opacity (atelectasis), a nodule (lung lesion), a tube
  and a pacemaker (support devices); lateral views have their own geometry;
* `write_mimic_cxr`, `write_rexgradient`, `write_iu_xray`, `write_padchest_gr` lay patients out in each dataset's
  on-disk format (file names, columns, id shapes, report layout; datasets.md §7.2), and with ``edge_cases=True``
  add the awkward cases a converter must survive. Each returns a `Layout` whose ``cases`` maps a case name to the
  ids involved, so tests can assert what happened to each. Writers work on deep copies of the patients they are
  given and assign each dataset's id formats to the copies (``Layout.patients``); the caller's objects are untouched.
"""
from __future__ import annotations

import copy
import csv
import gzip
import io
import json
import os
import random
import textwrap
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

CONDITIONS = ("cardiomegaly", "pleural_effusion", "consolidation", "edema", "pneumothorax", "atelectasis",
              "lung_lesion", "support_devices")
CHEXPERT_LABELS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
                   "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
                   "Pneumothorax", "Support Devices")
_CHEXPERT_OF = {"cardiomegaly": "Cardiomegaly", "pleural_effusion": "Pleural Effusion",
                "consolidation": "Consolidation", "edema": "Edema", "pneumothorax": "Pneumothorax",
                "atelectasis": "Atelectasis", "lung_lesion": "Lung Lesion", "support_devices": "Support Devices"}
_PREVALENCE = {"cardiomegaly": 0.25, "pleural_effusion": 0.25, "consolidation": 0.15, "edema": 0.15,
               "pneumothorax": 0.05, "atelectasis": 0.2, "lung_lesion": 0.08, "support_devices": 0.2}
_CODE_MEANING = {"PA": "postero-anterior", "AP": "antero-posterior", "LATERAL": "lateral", "LL": "left lateral"}


def _seed(*parts) -> int:
    return zlib.crc32("|".join(str(p) for p in parts).encode())


# ---------------------------------------------------------------------------------------------------------------
# Objects


@dataclass
class SyntheticImage:
    """One image. `view` is the raw label a dataset would store (None = missing); `seed` fixes its pixels."""

    image_id: str
    view: str | None
    labels: dict[str, int]
    seed: int
    side: str = "right"  # which side one-sided findings are on
    code_meaning: str | None = None  # MIMIC ViewCodeSequence_CodeMeaning
    missing: bool = False  # listed in metadata but no file on disk
    corrupt: bool = False  # a file that is not a decodable image
    in_split_file: bool = True  # MIMIC: has a row in the split file

    @property
    def is_lateral(self) -> bool:
        return (self.view or "").upper() in ("LATERAL", "LL", "LAT", "XTABLE LATERAL")

    def render(self, size: int | tuple[int, int] = 128) -> Image.Image:
        """The grey-scale picture (mode ``L``); `size` is a side length or (width, height)."""
        return render_image(self.labels, "lateral" if self.is_lateral else (self.view or "PA"), size, self.seed,
                            side=self.side)


@dataclass
class SyntheticStudy:
    """One study: sections of its report, its images, and when it happened."""

    study_id: str
    patient_id: str
    split: str  # "train" | "validate" | "test" (MIMIC spelling; writers translate)
    date: int  # YYYYMMDD
    time: float  # HHMMSS.ffffff as a number (MIMIC style: 80556.875 is 08:05:56.875)
    labels: dict[str, int]  # condition -> 1 positive, 0 negated, -1 uncertain (absent = not mentioned)
    indication: str
    technique: str
    comparison: str
    findings: str
    impression: str
    images: list[SyntheticImage]
    report_style: str = "normal"  # see `mimic_report`
    report_missing: bool = False
    report_bytes: bytes | None = None  # raw report content overriding everything (e.g. not UTF-8)
    in_metadata: bool = True  # MIMIC: False = the study appears only in the split file
    case: str = ""  # edge-case name, "" for ordinary studies

    @property
    def datetime_key(self) -> tuple[int, float]:
        return (self.date, self.time)


@dataclass
class SyntheticPatient:
    patient_id: str
    sex: str
    age: int
    studies: list[SyntheticStudy]


@dataclass
class Layout:
    """What a writer produced: the paths a converter takes, and the edge cases by name."""

    root: Path
    paths: dict[str, Path]
    patients: list[SyntheticPatient]
    cases: dict[str, list[str]] = field(default_factory=dict)

    def studies(self) -> list[SyntheticStudy]:
        return [s for p in self.patients for s in p.studies]

    def study(self, study_id: str) -> SyntheticStudy:
        for s in self.studies():
            if s.study_id == study_id:
                return s
        raise KeyError(study_id)


# ---------------------------------------------------------------------------------------------------------------
# Images


def _box_blur(a: np.ndarray, r: int) -> np.ndarray:
    if r <= 0:
        return a
    k = 2 * r + 1
    p = np.pad(a, r, mode="edge")
    c = np.cumsum(np.cumsum(p, axis=0), axis=1)
    c = np.pad(c, ((1, 0), (1, 0)))
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def render_image(labels: dict[str, int], view: str, size: int | tuple[int, int] = 128, seed: int = 0,
                 side: str = "right") -> Image.Image:
    """A procedural radiograph. `labels` uses `CONDITIONS` (1 = present; 0/-1 draw nothing / a faint hint).

    Frontal views (PA, AP, anything not lateral) put the patient's right on the image's left, as radiographs do.
    AP views magnify the heart by 10 % and carry a bright "portable" marker in the upper corner.
    """
    w, h = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    y, x = yy / h, xx / w
    img = np.full((h, w), 0.12, np.float32)

    def ellipse(cy, cx, ry, rx):
        return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0

    def blob(cy, cx, r):
        return np.exp(-(((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r)))

    present = {k for k, v in labels.items() if v == 1}
    hint = {k for k, v in labels.items() if v == -1}
    jitter = rng.normal(0, 0.01, 8)
    lateral = view.lower() == "lateral"
    if not lateral:
        body = ellipse(0.55, 0.5, 0.52, 0.46)
        img[body] = 0.55
        lung_r = ellipse(0.45 + jitter[0], 0.31, 0.31, 0.15)  # patient's right lung: image left
        lung_l = ellipse(0.45 + jitter[1], 0.69, 0.31, 0.15)
        lungs = lung_r | lung_l
        img[lungs] = 0.2
        ribs = (np.sin((y + 0.05 * np.abs(x - 0.5)) * 55) > 0.75) & lungs
        img[ribs] += 0.07
        img[(np.abs(x - 0.5) < 0.06) & (y > 0.12) & (y < 0.8)] = 0.68  # mediastinum
        img[(np.abs(x - 0.5) < 0.02) & body] += 0.08  # spine
        half_width = 0.21 if "cardiomegaly" in present else (0.16 if "cardiomegaly" in hint else 0.13)
        if view.upper() == "AP":
            half_width *= 1.1
        img[ellipse(0.67 + jitter[2], 0.54, 0.12, half_width)] = 0.74  # heart, mostly left of the midline
        dome = 0.76 + 0.04 * np.cos((x - 0.5) * 12)
        img[(y > dome) & body] = 0.7  # diaphragm / abdomen
        sx = 0.31 if side == "right" else 0.69
        lung_side = lung_r if side == "right" else lung_l
        if "pleural_effusion" in present or "pleural_effusion" in hint:
            level = 0.62 if "pleural_effusion" in present else 0.7
            meniscus = level - 0.06 * np.abs(x - sx) / 0.15
            img[lung_side & (y > meniscus)] = 0.66  # fills and blunts the costophrenic angle
        if "consolidation" in present or "consolidation" in hint:
            cy = 0.35 + 0.3 * rng.random()
            patch = blob(cy, sx + rng.normal(0, 0.03), 0.07) * (0.6 + 0.4 * rng.random((h, w)))
            img += np.where(lungs, (0.4 if "consolidation" in present else 0.18) * patch, 0)
        if "edema" in present:
            haze = blob(0.47, 0.38, 0.11) + blob(0.47, 0.62, 0.11)
            img += np.where(lungs, 0.3 * haze, 0)
        if "atelectasis" in present:
            band = (np.abs(y - 0.68 - 0.03 * (x - sx)) < 0.015) & lungs
            img[band] += 0.3
        if "lung_lesion" in present:
            img += np.where(ellipse(0.32, 0.69 if side == "right" else 0.31, 0.03, 0.03) & lungs, 0.4, 0)
        if "pneumothorax" in present:
            rim = lung_side & (y < 0.3) & (np.abs(x - sx) > 0.06)
            img[rim] = 0.03  # no lung markings
            edge = lung_side & (y < 0.3) & (np.abs(np.abs(x - sx) - 0.06) < 0.006)
            img[edge] = 0.6  # visceral pleural line
        if "support_devices" in present:
            img[(np.abs(x - 0.5) < 0.008) & (y > 0.02) & (y < 0.4)] = 0.95  # endotracheal tube
            img[ellipse(0.2, 0.8, 0.03, 0.05)] = 1.0  # pacemaker
        if view.upper() == "AP":
            img[(y < 0.06) & (x > 0.88)] = 1.0  # "portable" marker
    else:
        body = ellipse(0.55, 0.5, 0.5, 0.42)
        img[body] = 0.55
        lung = ellipse(0.44 + jitter[0], 0.5, 0.3, 0.28)
        img[lung] = 0.22
        img[(x > 0.74) & (x < 0.82) & body] = 0.72  # spine
        r = 0.17 if "cardiomegaly" in present else 0.12
        img[ellipse(0.62 + jitter[2], 0.36, r * 1.1, r)] = 0.72  # heart, anterior
        img[(y > 0.78 + 0.03 * np.sin(x * 6)) & body] = 0.7  # diaphragm
        if "pleural_effusion" in present or "pleural_effusion" in hint:
            level = 0.66 if "pleural_effusion" in present else 0.72
            img[lung & (x > 0.6) & (y > level - 0.1 * (x - 0.6))] = 0.64  # posterior costophrenic sulcus
        if "consolidation" in present:
            img += np.where(lung, 0.35 * blob(0.6, 0.55, 0.07) * (0.6 + 0.4 * rng.random((h, w))), 0)
        if "edema" in present:
            img += np.where(lung, 0.25 * blob(0.45, 0.5, 0.14), 0)
        if "support_devices" in present:
            img[(np.abs(x - 0.42) < 0.008) & (y > 0.02) & (y < 0.4)] = 0.95
    img += rng.normal(0, 0.025, (h, w)).astype(np.float32)
    img = _box_blur(img, max(1, min(h, w) // 96))
    return Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8), mode="L")


# ---------------------------------------------------------------------------------------------------------------
# Report text

_POSITIVE = {
    "cardiomegaly": ["The heart is moderately enlarged.", "Mild cardiomegaly is present.",
                     "The cardiac silhouette is enlarged."],
    "pleural_effusion": ["There is a small {side} pleural effusion.", "A moderate {side} pleural effusion is present.",
                         "Blunting of the {side} costophrenic angle is compatible with a small effusion."],
    "consolidation": ["There is a focal consolidation in the {side} lower lobe.",
                      "Patchy opacity in the {side} lung base is concerning for pneumonia."],
    "edema": ["There is mild pulmonary edema.", "Perihilar haziness and vascular congestion suggest edema."],
    "pneumothorax": ["There is a small {side} apical pneumothorax."],
    "atelectasis": ["Linear opacity at the {side} base likely reflects atelectasis.",
                    "There is mild bibasilar atelectasis."],
    "lung_lesion": ["A 1.2 cm nodule is seen in the {other} upper lobe."],
    "support_devices": ["An endotracheal tube terminates 4 cm above the carina. A left-sided pacemaker is present.",
                        "Support devices are in standard position."],
}
_NEGATIVE = {
    "cardiomegaly": ["The heart size is normal.", "The cardiac silhouette is within normal limits."],
    "pleural_effusion": ["No pleural effusion is seen.", "There is no pleural effusion."],
    "consolidation": ["There is no focal consolidation.", "No focal consolidation is identified."],
    "edema": ["There is no pulmonary edema.", "No evidence of pulmonary edema."],
    "pneumothorax": ["No pneumothorax is seen.", "There is no pneumothorax."],
    "atelectasis": ["No atelectasis is seen."],
    "lung_lesion": ["No suspicious pulmonary nodule is seen."],
    "support_devices": [],
}
_UNCERTAIN = {
    "cardiomegaly": ["The heart is possibly mildly enlarged."],
    "pleural_effusion": ["Possible trace {side} pleural effusion.", "A small {side} effusion cannot be excluded."],
    "consolidation": ["Subtle opacity at the {side} base may represent early pneumonia."],
    "edema": ["Mild vascular congestion may reflect early edema."],
    "pneumothorax": ["A tiny {side} apical pneumothorax cannot be excluded."],
    "atelectasis": ["Minimal basilar opacity may be atelectasis."],
    "lung_lesion": ["A possible nodular opacity in the {other} upper lobe is indeterminate."],
    "support_devices": [],
}
_INDICATIONS = ["___ year old {sex} with shortness of breath. // eval for pneumonia",
                "___ year old {sex} with cough and fever. // ? infiltrate", "Chest pain. // r/o acute process",
                "___ year old {sex} status post line placement. // line position?",
                "Dyspnea and leg swelling. // eval for edema, effusion"]


def _sentences(labels: dict[str, int], side: str, rng: random.Random) -> list[str]:
    other = "left" if side == "right" else "right"
    out = []
    for cond in CONDITIONS:
        if cond not in labels:
            continue
        pool = {1: _POSITIVE, 0: _NEGATIVE, -1: _UNCERTAIN}[labels[cond]][cond]
        if pool:
            out.append(rng.choice(pool).format(side=side, other=other))
    if not any(v == 1 for v in labels.values()):
        out.append(rng.choice(["The lungs are clear.", "Lungs are well expanded and clear."]))
    out.append(rng.choice(["No acute osseous abnormality.", "The osseous structures are unremarkable.",
                           "Degenerative changes of the thoracic spine are noted."]))
    return out


def _impression(labels: dict[str, int], side: str) -> str:
    pos = [c.replace("_", " ") for c in CONDITIONS if labels.get(c) == 1]
    if not pos:
        return "No acute cardiopulmonary process."
    return (", ".join(pos).capitalize() + ".").replace("pleural effusion", f"{side} pleural effusion")


def _technique(views: list[str | None]) -> str:
    up = [(v or "").upper() for v in views]
    if any(v in ("LATERAL", "LL") for v in up) and "PA" in up:
        return "PA and lateral views of the chest."
    if "AP" in up:
        return "Portable AP view of the chest."
    return "Chest radiograph, " + ("two views." if len(up) > 1 else "single view.")


# ---------------------------------------------------------------------------------------------------------------
# Generation


def _mimic_ids(rng: random.Random, used: set[str], first: str, n: int) -> str:
    while True:
        value = first + "".join(rng.choice("0123456789") for _ in range(n - 1))
        if value not in used:
            used.add(value)
            return value


def _dicom_id(rng: random.Random) -> str:
    return "-".join("".join(rng.choice("0123456789abcdef") for _ in range(8)) for _ in range(5))


def _evolve(prev: dict[str, int] | None, rng: random.Random) -> dict[str, int]:
    labels: dict[str, int] = {}
    for cond in CONDITIONS:
        if prev and prev.get(cond) == 1 and rng.random() < 0.6:
            labels[cond] = 1
            continue
        r = rng.random()
        if r < _PREVALENCE[cond]:
            labels[cond] = 1
        elif r < _PREVALENCE[cond] + 0.08:
            labels[cond] = -1
        elif r < _PREVALENCE[cond] + 0.5 and cond != "support_devices":
            labels[cond] = 0
    return labels


def make_study(*, study_id: str, patient_id: str, split: str, date: int, time: float, views: list[str | None],
               labels: dict[str, int], seed: int, sex: str = "man", side: str = "right", has_prior: bool = False,
               rng: random.Random | None = None) -> SyntheticStudy:
    """One study with report sections written from `labels` and one image per entry of `views`."""
    rng = rng or random.Random(_seed(seed, study_id))
    images = []
    for v in views:
        img_id = _dicom_id(rng)
        images.append(SyntheticImage(img_id, v, labels, _seed(seed, img_id), side=side,
                                     code_meaning=_CODE_MEANING.get((v or "").upper())))
    findings = " ".join(_sentences(labels, side, rng))
    comparison = "___" if has_prior else "None."
    return SyntheticStudy(study_id=study_id, patient_id=patient_id, split=split, date=date, time=time,
                          labels=labels, indication=rng.choice(_INDICATIONS).format(sex=sex),
                          technique=_technique(views), comparison=comparison, findings=findings,
                          impression=_impression(labels, side), images=images)


def _views(rng: random.Random) -> list[str]:
    r = rng.random()
    if r < 0.55:
        return ["PA", "LATERAL"]
    if r < 0.8:
        return ["AP"]
    if r < 0.9:
        return ["PA", "LL"]
    if r < 0.95:
        return ["PA"]
    return ["AP", "PA", "LATERAL"]


def generate_patients(n_patients: int, seed: int = 0, *, max_studies: int = 4, splits: dict[str, float] | None = None,
                      views: list[str] | None = None, start_patient: int = 0) -> list[SyntheticPatient]:
    """`n_patients` patients with 1..`max_studies` chronological studies each.

    Args:
        seed: everything follows from it.
        splits: split -> fraction, drawn per patient (default 80 % train, 10 % validate, 10 % test); the first
            patients take each split once, so every split is present when n_patients >= len(splits).
        views: fixed views for every study (e.g. ``["PA", "LATERAL"]``); default a realistic mix (PA+LATERAL,
            AP only, PA+LL, PA only, AP+PA+LATERAL).
        start_patient: offset for patient numbering, to generate disjoint cohorts.
    MIMIC-shaped ids: subject ``1xxxxxxx``, study ``5xxxxxxx`` (random, unrelated to time), dicom
    ``xxxxxxxx-xxxxxxxx-xxxxxxxx-xxxxxxxx-xxxxxxxx``; dates in 2150..2190 (date-shifted like MIMIC).
    """
    splits = splits or {"train": 0.8, "validate": 0.1, "test": 0.1}
    rng = random.Random(seed)
    used: set[str] = set()
    patients = []
    for i in range(n_patients):
        prng = random.Random(_seed(seed, "patient", start_patient + i))
        pid = f"1{(start_patient + i) % 10_000_000:07d}"
        used.add(pid)
        names = [k for k, v in splits.items() if v > 0]
        # every split with a positive share gets a patient first, so even tiny cohorts have all splits
        split = names[i] if i < len(names) else prng.choices(list(splits), weights=list(splits.values()))[0]
        sex = prng.choice(["man", "woman"])
        side = prng.choice(["right", "left"])
        n = prng.randint(1, max_studies)
        date = 2150_00_00 + prng.randint(0, 40) * 10000 + prng.randint(1, 12) * 100 + prng.randint(1, 28)
        studies, labels = [], None
        for k in range(n):
            if k:
                date = _add_days(date, prng.randint(0, 200))
            time = prng.randint(0, 23) * 10000 + prng.randint(0, 59) * 100 + prng.randint(0, 59) \
                + prng.randint(0, 999) / 1000
            labels = _evolve(labels, prng)
            sid = _mimic_ids(rng, used, "5", 8)
            studies.append(make_study(study_id=sid, patient_id=pid, split=split, date=date, time=time,
                                      views=list(views) if views else _views(prng), labels=labels, seed=seed,
                                      sex=sex, side=side, has_prior=k > 0, rng=prng))
        studies.sort(key=lambda s: s.datetime_key)
        patients.append(SyntheticPatient(pid, "M" if sex == "man" else "F", prng.randint(20, 90), studies))
    return patients


def _add_days(date: int, days: int) -> int:
    import datetime as dt

    d = dt.date(date // 10000, date // 100 % 100, date % 100) + dt.timedelta(days=days)
    return d.year * 10000 + d.month * 100 + d.day


# ---------------------------------------------------------------------------------------------------------------
# Writers: shared helpers


def _save(img: Image.Image, path: Path, fmt: str, bits16: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if bits16:
        arr = np.asarray(img, dtype=np.uint16) * 64  # 10-bit range, like many DICOM-derived PNGs
        Image.fromarray(arr.astype(np.uint16)).save(path, format="PNG")  # 16-bit grey ("I;16")
    elif fmt == "JPEG":
        img.save(path, format="JPEG", quality=90)
    else:
        img.save(path, format="PNG")


def _write_image(image: SyntheticImage, path: Path, size, fmt: str, bits16: bool = False) -> None:
    if image.missing:
        return
    if image.corrupt:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\xff\xd8\xff\xe0 this is not really an image \x00\x01")
        return
    _save(image.render(size), path, fmt, bits16)


def _wrap(text: str, width: int = 78) -> list[str]:
    return textwrap.wrap(text, width=width) or [""]


def mimic_report(study: SyntheticStudy) -> str:
    """A report in MIMIC's real layout: a "FINAL REPORT" line after ~33 spaces, every line starting with a space,
    ``" HEADER:  text"``, ``" "`` lines between sections, text wrapped at 79 characters.

    `study.report_style` chooses the structure: ``normal`` (EXAMINATION, INDICATION, TECHNIQUE, COMPARISON,
    FINDINGS, IMPRESSION), ``impression_only``, ``findings_and_impression`` (one combined header),
    ``double_findings`` (an empty FINDINGS header, then the real one), ``no_headers`` (no leading spaces, so the
    official parser sees one "full report" section), ``history_instead_of_indication``, ``empty_findings``.
    """
    style = study.report_style
    lines = [" " * 33 + "FINAL REPORT"]

    def section(name: str, text: str, inline: bool = True):
        body = _wrap(text)
        if inline:
            lines.append(f" {name}:  {body[0]}")
            lines.extend(" " + b for b in body[1:])
        else:
            lines.append(f" {name}: ")
            lines.append(" ")
            lines.extend(" " + b for b in body)
        lines.append(" ")

    if style == "no_headers":
        return "FINAL REPORT\n" + "\n".join(_wrap(study.findings + " " + study.impression)) + "\n"
    exam = "CHEST (PA AND LAT)" if "PA" in study.technique else "CHEST (PORTABLE AP)"
    section("EXAMINATION", exam)
    if style == "history_instead_of_indication":
        section("HISTORY", study.indication)
    else:
        section("INDICATION", study.indication)
    section("TECHNIQUE", study.technique)
    section("COMPARISON", study.comparison)
    if style == "normal" or style == "history_instead_of_indication":
        section("FINDINGS", study.findings, inline=False)
        section("IMPRESSION", study.impression, inline=False)
    elif style == "impression_only":
        section("IMPRESSION", study.findings + " " + study.impression, inline=False)
    elif style == "findings_and_impression":
        section("FINDINGS AND IMPRESSION", study.findings + " " + study.impression, inline=False)
    elif style == "double_findings":
        lines += [" FINDINGS: ", " "]
        section("FINDINGS", study.findings, inline=False)
        section("IMPRESSION", study.impression, inline=False)
    elif style == "empty_findings":
        lines += [" FINDINGS: ", " "]
        section("IMPRESSION", study.impression, inline=False)
    else:
        raise ValueError(f"unknown report_style {style!r}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# MIMIC-CXR


def mimic_edge_patients(seed: int = 0) -> tuple[list[SyntheticPatient], dict[str, list[str]]]:
    """Patients covering datasets.md §7.2 (a)-(i) and the robustness cases; returns them and case -> study ids.

    Cases (study ids in the returned dict): ``all_sections`` (a), ``impression_only`` (b),
    ``findings_and_impression`` (c), ``double_findings`` (d), ``chronology`` (e: 4 studies of one patient, study-id
    order != time order, two on one date at 08:05:56.875 and 10:10:10), ``ap_only``, ``pa_ll``,
    ``odd_views`` (SWIMMERS + AP AXIAL + PA), ``nan_view_fallback`` (NaN ViewPosition, code meaning
    "postero-anterior"), ``nan_view_unknown`` (NaN ViewPosition and code meaning, + a LATERAL), ``only_odd_views``
    (f); ``many_images`` (g: 4 current + 4 prior images); ``test_patient`` and ``cross_split`` (h: a patient
    whose earlier study is in train and later one in test); ``no_frontal`` (i: lateral only);
    ``missing_image`` (PA file absent, LATERAL present), ``all_images_missing``, ``corrupt_image``,
    ``report_not_utf8``, ``report_no_headers``, ``report_missing``, ``history_instead_of_indication``,
    ``split_only`` (study only in the split file), ``no_split_row`` (no split row for any image),
    ``partial_split_rows`` (one image lacks its split row), ``validate_patient``, ``empty_findings``, and
    ``prior_chain_first`` / ``prior_chain_no_findings`` / ``prior_chain`` (the middle study has no FINDINGS).
    """
    rng = random.Random(_seed(seed, "mimic-edge"))
    used: set[str] = set()
    cases: dict[str, list[str]] = {}
    patients: list[SyntheticPatient] = []
    lab = {"cardiomegaly": 1, "pleural_effusion": 0, "pneumothorax": 0}

    def patient(pid: str, specs: list[dict], case_names: list[str]) -> None:
        studies = []
        for spec, case in zip(specs, case_names):
            sid = spec.get("study_id") or _mimic_ids(rng, used, "5", 8)
            used.add(sid)
            st = make_study(study_id=sid, patient_id=pid, split=spec.get("split", "train"), date=spec["date"],
                            time=spec.get("time", 120000.0), views=spec.get("views", ["PA", "LATERAL"]),
                            labels=spec.get("labels", lab), seed=seed, has_prior=bool(studies), rng=rng)
            for k, v in spec.get("study", {}).items():
                setattr(st, k, v)
            for i, changes in spec.get("images", {}).items():
                for k, v in changes.items():
                    setattr(st.images[i], k, v)
            st.case = case
            if case:
                cases.setdefault(case, []).append(sid)
            studies.append(st)
        patients.append(SyntheticPatient(pid, "M", 60, sorted(studies, key=lambda s: s.datetime_key)))

    # (a) all sections, one study
    patient("19000001", [dict(date=21800105, time=140000.0)], ["all_sections"])
    # (b), (c), (d)
    patient("19000002", [dict(date=21800105, study={"report_style": "impression_only"})], ["impression_only"])
    patient("19000003", [dict(date=21800105, study={"report_style": "findings_and_impression"})],
            ["findings_and_impression"])
    patient("19000004", [dict(date=21800105, study={"report_style": "double_findings"})], ["double_findings"])
    # (e) chronology: ids chosen so that id order is the reverse of time order
    patient("19000005", [
        dict(date=21810301, time=101010.0, study_id="59000001"),
        dict(date=21810301, time=80556.875, study_id="59000002"),  # same day, earlier (string order would flip it)
        dict(date=21800615, time=235959.0, study_id="59000003"),
        dict(date=21820101, time=90000.0, study_id="59000000"),
    ], ["chronology"] * 4)
    # (f) views
    patient("19000006", [dict(date=21800105, views=["AP"])], ["ap_only"])
    patient("19000007", [dict(date=21800105, views=["PA", "LL"])], ["pa_ll"])
    patient("19000008", [dict(date=21800105, views=["SWIMMERS", "AP AXIAL", "PA"])], ["odd_views"])
    patient("19000009", [dict(date=21800105, views=[None, "LATERAL"],
                              images={0: {"code_meaning": "postero-anterior"}})], ["nan_view_fallback"])
    patient("19000010", [dict(date=21800105, views=[None, "LATERAL"], images={0: {"code_meaning": None}})],
            ["nan_view_unknown"])
    patient("19000011", [dict(date=21800105, views=["SWIMMERS", "AP AXIAL"])], ["only_odd_views"])
    # (g) current + prior images above 6
    patient("19000012", [dict(date=21800105, views=["PA", "AP", "LATERAL", "LL"]),
                         dict(date=21800205, views=["PA", "AP", "LATERAL", "LL"])], ["", "many_images"])
    # (h) test-split patient with a prior; a patient straddling splits
    patient("19000013", [dict(date=21800105, split="test"), dict(date=21800305, split="test")],
            ["", "test_patient"])
    patient("19000014", [dict(date=21800105, split="train"), dict(date=21800305, split="test")],
            ["cross_split_earlier", "cross_split"])
    # (i) no frontal image
    patient("19000015", [dict(date=21800105, views=["LATERAL"])], ["no_frontal"])
    # robustness
    patient("19000016", [dict(date=21800105, images={0: {"missing": True}})], ["missing_image"])
    patient("19000017", [dict(date=21800105, views=["PA"], images={0: {"missing": True}})],
            ["all_images_missing"])
    patient("19000018", [dict(date=21800105, images={1: {"corrupt": True}})], ["corrupt_image"])
    patient("19000019", [dict(date=21800105, study={"report_bytes": b" FINDINGS: caf\xe9 \xff\xfe broken\n"})],
            ["report_not_utf8"])
    patient("19000020", [dict(date=21800105, study={"report_style": "no_headers"})], ["report_no_headers"])
    patient("19000021", [dict(date=21800105, study={"report_missing": True})], ["report_missing"])
    patient("19000022", [dict(date=21800105, study={"report_style": "history_instead_of_indication"})],
            ["history_instead_of_indication"])
    patient("19000023", [dict(date=21800105, study={"in_metadata": False})], ["split_only"])
    patient("19000024", [dict(date=21800105, images={0: {"in_split_file": False}, 1: {"in_split_file": False}})],
            ["no_split_row"])
    patient("19000025", [dict(date=21800105, images={1: {"in_split_file": False}})], ["partial_split_rows"])
    patient("19000026", [dict(date=21800105, split="validate"), dict(date=21800107, split="validate")],
            ["", "validate_patient"])
    patient("19000027", [dict(date=21800105, study={"report_style": "empty_findings"})], ["empty_findings"])
    # a prior without FINDINGS between two studies with FINDINGS
    patient("19000028", [dict(date=21800105), dict(date=21800205, study={"report_style": "impression_only"}),
                         dict(date=21800305)], ["prior_chain_first", "prior_chain_no_findings", "prior_chain"])
    return patients, cases


def write_mimic_cxr(root: str | os.PathLike, patients: list[SyntheticPatient] | None = None, *, seed: int = 0,
                    image_size: int | tuple[int, int] = 64, reports: str = "dir", edge_cases: bool = True,
                    extra_split_rows: bool = True, chexpert: bool = True) -> Layout:
    """MIMIC-CXR-JPG + reports layout under `root`.

    Writes ``mimic-cxr-jpg/{mimic-cxr-2.0.0-metadata.csv.gz, mimic-cxr-2.0.0-split.csv.gz,
    mimic-cxr-2.0.0-chexpert.csv.gz, files/pNN/pSUBJECT/sSTUDY/<dicom>.jpg}`` and the reports either as
    ``mimic-cxr-reports/files/pNN/pSUBJECT/sSTUDY.txt`` (``reports="dir"``) or ``mimic-cxr-reports.zip`` with
    members ``files/...`` (``reports="zip"``). `Layout.paths` has ``jpg_root`` and ``reports``.
    With `extra_split_rows`, the split file also lists an image that the metadata lacks (case
    ``orphan_split_row``).
    """
    root = Path(root)
    patients = copy.deepcopy(patients) if patients is not None else generate_patients(10, seed=seed)
    cases: dict[str, list[str]] = {}
    if edge_cases:
        extra, cases = mimic_edge_patients(seed)
        patients = patients + extra
    jpg = root / "mimic-cxr-jpg"
    files = jpg / "files"
    meta_rows, split_rows, chex_rows, report_files = [], [], [], {}
    for p in patients:
        for st in p.studies:
            sdir = f"p{p.patient_id[:2]}/p{p.patient_id}"
            for im in st.images:
                if st.in_metadata:
                    view = im.view
                    meta_rows.append([im.image_id, p.patient_id, st.study_id,
                                      "CHEST (PA AND LAT)" if "PA" in st.technique else "CHEST (PORTABLE AP)",
                                      "" if view is None else view, 2544, 3056, st.date, _fmt_time(st.time),
                                      "CHEST (PA AND LAT)", im.code_meaning or "",
                                      "Erect" if view != "AP" else ""])
                if im.in_split_file:
                    split_rows.append([im.image_id, st.study_id, p.patient_id, st.split])
                _write_image(im, files / sdir / f"s{st.study_id}" / f"{im.image_id}.jpg", image_size, "JPEG")
            if st.report_missing:
                continue
            content = st.report_bytes if st.report_bytes is not None else mimic_report(st).encode()
            report_files[f"files/{sdir}/s{st.study_id}.txt"] = content
            chex_rows.append([p.patient_id, st.study_id] + [_chexpert_value(st.labels, c) for c in CHEXPERT_LABELS])
    if extra_split_rows:
        orphan = _dicom_id(random.Random(_seed(seed, "orphan")))
        split_rows.append([orphan, "58999999", "19999999", "train"])
        cases["orphan_split_row"] = [orphan]
    _write_csv_gz(jpg / "mimic-cxr-2.0.0-metadata.csv.gz",
                  ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows",
                   "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning",
                   "ViewCodeSequence_CodeMeaning", "PatientOrientationCodeSequence_CodeMeaning"], meta_rows)
    _write_csv_gz(jpg / "mimic-cxr-2.0.0-split.csv.gz", ["dicom_id", "study_id", "subject_id", "split"], split_rows)
    if chexpert:
        _write_csv_gz(jpg / "mimic-cxr-2.0.0-chexpert.csv.gz", ["subject_id", "study_id", *CHEXPERT_LABELS],
                      chex_rows)
    if reports == "zip":
        rpath = root / "mimic-cxr-reports.zip"
        with zipfile.ZipFile(rpath, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, content in sorted(report_files.items()):
                zf.writestr(name, content)
    else:
        rpath = root / "mimic-cxr-reports"
        for name, content in report_files.items():
            out = rpath / name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(content)
    return Layout(root, {"jpg_root": jpg, "reports": rpath}, patients, cases)


def _fmt_time(t: float) -> str:
    # MIMIC writes StudyTime as a float with leading zeros dropped: 80556.875, 101010.0
    s = f"{t:.3f}".rstrip("0")
    return s + "0" if s.endswith(".") else s


def _chexpert_value(labels: dict[str, int], chexpert_name: str) -> str:
    for cond, name in _CHEXPERT_OF.items():
        if name == chexpert_name and cond in labels:
            return f"{float(labels[cond]):.1f}"
    if chexpert_name == "No Finding" and not any(v == 1 for v in labels.values()):
        return "1.0"
    return ""


def _write_csv_gz(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    with gzip.open(path, "wt", newline="") as f:
        f.write(buf.getvalue())


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


# ---------------------------------------------------------------------------------------------------------------
# ReXGradient-160K

_REX_VIEW = {"PA": ["PA", "POSTERO_ANTERIOR"], "AP": ["AP", "ANTERO_POSTERIOR"], "LATERAL": ["LATERAL"], "LL": ["LL"]}


def _alnum(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(n))


def write_rexgradient(root: str | os.PathLike, patients: list[SyntheticPatient] | None = None, *, seed: int = 0,
                      image_size: int | tuple[int, int] = 64, edge_cases: bool = True, csv_files: bool = True
                      ) -> Layout:
    """ReXGradient-160K layout: ``metadata/{train,valid,test}_metadata_view_position.json`` (+ ``*_metadata.csv``)
    and ``deid_png/<PatientID>/<Accession>/studies/<StudyUID>/series/<SeriesUID>/instances/<SOP>.png``.

    Study ids are ``p<PatientID>_a<Accession>_s<StudyUID>``; each `SyntheticStudy.study_id` is replaced by it.
    Splits: train / valid / test (``validate`` becomes ``valid``). Edge cases (ids in `Layout.cases`):
    ``seven_images`` (dropped for > 6), ``six_images``, ``empty_findings``, ``view_spellings``
    (POSTERO_ANTERIOR, ANTERO_POSTERIOR, LL), ``unknown_views`` (UNKNOWN and null with a LATERAL),
    ``comparison_none``, ``missing_image``, ``csv_only`` (in the CSV, not in the JSON).
    """
    root = Path(root)
    rng = random.Random(_seed(seed, "rex"))
    patients = copy.deepcopy(patients) if patients is not None else generate_patients(12, seed=seed)
    cases: dict[str, list[str]] = {}
    if edge_cases:
        lab = {"pleural_effusion": 1, "cardiomegaly": 0}
        edge = [("seven_images", ["PA", "LATERAL", "PA", "LATERAL", "AP", "LL", "PA"], "train", {}),
                ("six_images", ["PA", "LATERAL", "PA", "LATERAL", "AP", "LL"], "train", {}),
                ("empty_findings", ["PA", "LATERAL"], "train", {"findings": ""}),
                ("view_spellings", ["POSTERO_ANTERIOR", "ANTERO_POSTERIOR", "LL"], "valid", {}),
                ("unknown_views", ["UNKNOWN", None, "LATERAL"], "test", {}),
                ("comparison_none", ["PA"], "test", {"comparison": "None."}),
                ("missing_image", ["PA", "LATERAL"], "test", {}),
                ("csv_only", ["PA"], "train", {})]
        extra = []
        for i, (case, views, split, changes) in enumerate(edge):
            st = make_study(study_id=f"edge{i}", patient_id=f"E{i}", split=split, date=21800101 + i, time=1.0,
                            views=views, labels=lab, seed=seed, rng=random.Random(_seed(seed, case)))
            for k, v in changes.items():
                setattr(st, k, v)
            st.case = case
            if case == "missing_image":
                st.images[1].missing = True
            extra.append(SyntheticPatient(f"E{i}", "F", 50, [st]))
        patients = patients + extra
    by_split: dict[str, dict] = {"train": {}, "valid": {}, "test": {}}
    csv_rows: dict[str, list] = {"train": [], "valid": [], "test": []}
    for p in patients:
        pat = "GRDN" + _alnum(rng, 12)
        for st in p.studies:
            split = {"validate": "valid", "val": "valid"}.get(st.split, st.split)
            acc = "GRDN" + _alnum(rng, 12)
            suid = "1.2.826.0.1.3680043.8.498." + "".join(rng.choice("0123456789") for _ in range(20))
            key = f"p{pat}_a{acc}_s{suid}"
            st.study_id, st.patient_id = key, pat
            if st.case:
                cases.setdefault(st.case, []).append(key)
            series = "1.2.826.0.1.3680043.8.498." + "".join(rng.choice("0123456789") for _ in range(18))
            paths, views = [], []
            for im in st.images:
                sop = "1.2.826.0.1.3680043.8.498." + "".join(rng.choice("0123456789") for _ in range(22))
                im.image_id = sop
                rel = f"deid_png/{pat}/{acc}/studies/{suid}/series/{series}/instances/{sop}.png"
                _write_image(im, root / rel, image_size, "PNG")
                paths.append("../" + rel)
                raw = im.view
                views.append(rng.choice(_REX_VIEW[raw]) if raw in _REX_VIEW else raw)
            date = f"{st.date:08d}"
            age = f"{p.age:03d}Y"
            rec = {"PatientID": pat, "AccessionNumber": acc, "StudyInstanceUid": suid, "StudyDate": date,
                   "PatientAge": age, "PatientSex": p.sex, "Indication": st.indication,
                   "Comparison": st.comparison, "Findings": st.findings, "Impression": st.impression,
                   "ImagePath": paths, "ImageViewPosition": views}
            if st.case != "csv_only":
                by_split[split][key] = rec
            csv_rows[split].append([key, pat, acc, suid, date, age, p.sex, st.indication, st.comparison,
                                    st.findings, st.impression])
    meta = root / "metadata"
    meta.mkdir(parents=True, exist_ok=True)
    for split, recs in by_split.items():
        (meta / f"{split}_metadata_view_position.json").write_text(json.dumps(recs, indent=1))
        if csv_files:
            _write_csv(meta / f"{split}_metadata.csv",
                       ["id", "PatientID", "AccessionNumber", "StudyInstanceUid", "StudyDate", "PatientAge",
                        "PatientSex", "Indication", "Comparison", "Findings", "Impression"], csv_rows[split])
    return Layout(root, {"root": root}, patients, cases)


# ---------------------------------------------------------------------------------------------------------------
# IU-Xray


def write_iu_xray(root: str | os.PathLike, patients: list[SyntheticPatient] | None = None, *, seed: int = 0,
                  image_size: int | tuple[int, int] = 64, edge_cases: bool = True, kaggle: bool = True,
                  openi: bool = False) -> Layout:
    """IU-Xray in R2Gen form (``annotation.json`` + ``images/<id>/{0,1}.png``), plus the Kaggle CSVs
    (``indiana_reports.csv``, ``indiana_projections.csv``) and optionally OpenI XML (``ecgen-radiology/<uid>.xml``).

    Each patient's first study becomes one R2Gen item ``CXR<uid>_IM-<xxxx>`` with exactly two images: its first
    frontal and its first lateral (generated with PA+LATERAL when `patients` is None). Splits: train / val /
    test (``validate`` -> ``val``). Edge cases: ``lateral_first`` (0.png is the lateral), ``three_projections``
    (Kaggle lists 3 files), ``both_lateral`` (both labelled Lateral), ``xxxx_tokens``, ``empty_indication``,
    ``comparison_none``, ``val_item``, ``empty_report`` (dropped), ``missing_image`` (1.png absent),
    ``openi_only`` (no Kaggle row; context from XML when `openi`).
    """
    root = Path(root)
    if patients is None:
        patients = generate_patients(10, seed=seed, max_studies=1, views=["PA", "LATERAL"],
                                     splits={"train": 0.7, "validate": 0.1, "test": 0.2})
    patients = copy.deepcopy(patients)
    edge_names = ["lateral_first", "three_projections", "both_lateral", "xxxx_tokens", "empty_indication",
                  "comparison_none", "val_item", "empty_report", "missing_image", "openi_only"] if edge_cases else []
    for i, name in enumerate(edge_names):
        st = make_study(study_id=name, patient_id=f"E{i}", split="validate" if name == "val_item" else "train",
                        date=21800101, time=1.0, views=["PA", "LATERAL"], labels={"pleural_effusion": 0},
                        seed=seed, rng=random.Random(_seed(seed, "iu", name)))
        st.case = name
        if name == "xxxx_tokens":
            st.findings = "There are no XXXX of a pleural effusion. The XXXX are intact. Heart size is normal."
        if name == "empty_indication":
            st.indication = ""
        if name == "comparison_none":
            st.comparison = "None."
        if name == "empty_report":
            st.findings = ""
        patients.append(SyntheticPatient(f"E{i}", "M", 40, [st]))
    cases: dict[str, list[str]] = {}
    ann: dict[str, list] = {"train": [], "val": [], "test": []}
    rep_rows, proj_rows = [], []
    for n, p in enumerate(patients, start=1):
        st = p.studies[0]
        frontal = next((im for im in st.images if not im.is_lateral), None)
        lateral = next((im for im in st.images if im.is_lateral), None)
        if frontal is None or lateral is None:
            continue
        uid = n
        im_no = 1000 + n
        rid = f"CXR{uid}_IM-{im_no:04d}"
        st.study_id, st.patient_id = rid, f"CXR{uid}"
        if st.case:
            cases.setdefault(st.case, []).append(rid)
        order = [lateral, frontal] if st.case == "lateral_first" else [frontal, lateral]
        paths = []
        for k, im in enumerate(order):
            rel = f"{rid}/{k}.png"
            if not (st.case == "missing_image" and k == 1):
                _write_image(im, root / "images" / rel, image_size, "PNG")
            paths.append(rel)
            im.image_id = f"{rid}/{k}"
        split = {"validate": "val"}.get(st.split, st.split)
        ann[split].append({"id": rid, "report": st.findings, "image_path": paths, "split": split})
        if st.case != "openi_only":
            rep_rows.append([uid, "normal", "normal", "Xray Chest PA and Lateral", st.indication, st.comparison,
                             st.findings, st.impression])
            kaggle_names = [f"{uid}_IM-{im_no:04d}-{1001 + k}.dcm.png" for k in range(len(order))]
            projs = ["Lateral" if im.is_lateral else "Frontal" for im in order]
            if st.case == "both_lateral":
                projs = ["Lateral", "Lateral"]
            if st.case == "three_projections":
                kaggle_names.append(f"{uid}_IM-{im_no:04d}-{1001 + len(order)}.dcm.png")
                projs.append("Lateral")
            proj_rows += [[uid, f, pr] for f, pr in zip(kaggle_names, projs)]
        if openi:
            _write_openi_xml(root / "ecgen-radiology" / f"{uid}.xml", uid, rid, st, len(order))
    (root / "annotation.json").write_text(json.dumps(ann))
    if kaggle:
        _write_csv(root / "indiana_reports.csv",
                   ["uid", "MeSH", "Problems", "image", "indication", "comparison", "findings", "impression"],
                   rep_rows)
        _write_csv(root / "indiana_projections.csv", ["uid", "filename", "projection"], proj_rows)
    return Layout(root, {"root": root}, patients, cases)


def _write_openi_xml(path: Path, uid: int, rid: str, st: SyntheticStudy, n_images: int) -> None:
    from xml.sax.saxutils import escape

    path.parent.mkdir(parents=True, exist_ok=True)
    parts = [f'<?xml version="1.0" encoding="utf-8"?>\n<eCitation>\n<uId id="CXR{uid}"/>\n<MedlineCitation>'
             "<Article><Abstract>"]
    for label, text in (("COMPARISON", st.comparison), ("INDICATION", st.indication), ("FINDINGS", st.findings),
                        ("IMPRESSION", st.impression)):
        parts.append(f'<AbstractText Label="{label}">{escape(text)}</AbstractText>')
    parts.append("</Abstract></Article></MedlineCitation>")
    im = rid.split("_", 1)[1]
    for k in range(n_images):
        parts.append(f'<parentImage id="CXR{uid}_{k + 1}_{im}-{1001 + k}"><caption/></parentImage>')
    parts.append("</eCitation>\n")
    path.write_text("\n".join(parts))


# ---------------------------------------------------------------------------------------------------------------
# PadChest-GR


def write_padchest_gr(root: str | os.PathLike, patients: list[SyntheticPatient] | None = None, *, seed: int = 0,
                      image_size: int | tuple[int, int] = 64, edge_cases: bool = True, bits16: bool = True) -> Layout:
    """PadChest-GR layout: ``grounded_reports_20240819.json``, ``master_table.csv``,
    ``Padchest_GR_files/PadChest_GR/<ImageID>.png`` and
    ``PadChest_GR_progression_prior_studies/<subdir>/<priorImageID>.png`` (16-bit PNGs when `bits16`).

    Each patient's **last** study is a GR study with its frontal image; when the patient has an earlier study, its
    frontal image is written as the prior (``PreviousStudyID`` / ``PreviousImageID`` in the JSON and
    ``prior_imageID`` in the table). The report is one finding sentence per element; the table has several rows per
    study, some with an empty ``sentence_en``. Splits: train / validation / test. Edge cases: ``normal_study``
    (one negative sentence), ``abnormal_with_boxes``, ``prior_present``, ``prior_missing_on_disk``,
    ``validation_study``, ``no_sentences`` (dropped: no findings), ``prior_only_in_table`` (link only in
    master_table), ``missing_image``.
    """
    root = Path(root)
    rng = random.Random(_seed(seed, "padchest"))
    patients = copy.deepcopy(patients) if patients is not None else generate_patients(10, seed=seed, views=["PA"])
    if edge_cases:
        specs = [("normal_study", 1, {}), ("abnormal_with_boxes", 1, {"pleural_effusion": 1, "cardiomegaly": 1}),
                 ("prior_present", 2, {"consolidation": 1}), ("prior_missing_on_disk", 2, {"edema": 1}),
                 ("validation_study", 1, {}), ("no_sentences", 1, {}), ("prior_only_in_table", 2, {"atelectasis": 1}),
                 ("missing_image", 1, {})]
        for i, (name, n, labels) in enumerate(specs):
            studies = []
            for k in range(n):
                st = make_study(study_id=f"{name}{k}", patient_id=f"E{i}", split="validate" if name ==
                                "validation_study" else "train", date=20150101 + k * 100, time=1.0, views=["PA"],
                                labels=labels or {"pleural_effusion": 0}, seed=seed,
                                rng=random.Random(_seed(seed, "pc", name, k)))
                st.case = name if k == n - 1 else ""
                studies.append(st)
            patients.append(SyntheticPatient(f"E{i}", "F", 70, studies))
    cases: dict[str, list[str]] = {}
    records, table = [], []
    gr_dir = root / "Padchest_GR_files" / "PadChest_GR"
    prior_dir = root / "PadChest_GR_progression_prior_studies"
    for p in patients:
        st = p.studies[-1]
        frontal = next((im for im in st.images if not im.is_lateral), None)
        if frontal is None:
            continue
        sid = "".join(rng.choice("0123456789") for _ in range(38))
        image_id = f"{sid}_{_alnum(rng, 6).lower()}.png"
        st.study_id, st.patient_id = sid, f"{p.patient_id}"
        frontal.image_id = image_id
        if st.case:
            cases.setdefault(st.case, []).append(sid)
        if st.case != "missing_image":
            _write_image(frontal, gr_dir / image_id, image_size, "PNG", bits16)
        prev_sid = prev_img = None
        if len(p.studies) > 1:
            prior = p.studies[-2]
            pfront = next((im for im in prior.images if not im.is_lateral), None)
            if pfront is not None:
                prev_sid = "".join(rng.choice("0123456789") for _ in range(45))
                prev_img = f"{prev_sid}_01-0{rng.randint(10, 99)}-0{rng.randint(10, 99)}.png"
                prior.study_id = prev_sid
                pfront.image_id = prev_img
                if st.case != "prior_missing_on_disk":
                    _write_image(pfront, prior_dir / f"batch{rng.randint(1, 3)}" / prev_img, image_size, "PNG",
                                 bits16)
        sentences = [] if st.case == "no_sentences" else _split_sentences(st.findings)
        findings = []
        for s in sentences:
            abnormal = not s.lower().startswith(("no ", "there is no", "the heart size is normal", "the lungs are",
                                                 "lungs are", "the osseous", "the cardiac silhouette is within"))
            boxes = [[round(rng.uniform(0, .4), 3), round(rng.uniform(0, .4), 3), round(rng.uniform(.5, 1), 3),
                      round(rng.uniform(.5, 1), 3)]] if abnormal else []
            findings.append({"sentence_en": s, "sentence_es": "[es] " + s, "abnormal": abnormal, "boxes": boxes,
                             "extra_boxes": [], "labels": ["effusion"] if abnormal else [],
                             "locations": ["right"] if abnormal else [],
                             "progression": "stable" if abnormal and prev_sid else None})
        rec = {"StudyID": sid, "ImageID": image_id, "findings": findings,
               "PreviousStudyID": prev_sid if st.case != "prior_only_in_table" else None,
               "PreviousImageID": prev_img if st.case != "prior_only_in_table" else None}
        records.append(rec)
        split = {"validate": "validation"}.get(st.split, st.split)
        for k, f in enumerate(findings or [{"sentence_en": "", "labels": []}]):
            table.append([sid, image_id, ";".join(f.get("labels", [])) or "normal", len(f.get("boxes", [])), 0,
                          "", str(bool(prev_sid)), "", prev_img or "", "" if k == 1 else f["sentence_en"],
                          "", "True", str(split == "validation"), split, p.patient_id, "False", "1950",
                          p.sex, str(st.date), str(st.date), str(p.age), "", str(st.date // 10000)])
    (root / "grounded_reports_20240819.json").write_text(json.dumps(records, indent=1))
    _write_csv(root / "master_table.csv",
               ["StudyID", "ImageID", "label", "boxes_count", "extra_boxes_count", "locations", "prior_study",
                "progression_status", "prior_imageID", "sentence_en", "sentence_es", "study_is_benchmark",
                "study_is_validation", "split", "PatientID", "patient_is_benchmark", "PatientBirth",
                "PatientSex_DICOM", "StudyDate_DICOM", "StudyDate", "PatientAge", "label_group", "Year"], table)
    return Layout(root, {"root": root}, patients, cases)


def _split_sentences(text: str) -> list[str]:
    out, cur = [], []
    for tok in text.split():
        cur.append(tok)
        if tok.endswith(".") and not tok[:-1].replace(".", "").isdigit():
            out.append(" ".join(cur))
            cur = []
    if cur:
        out.append(" ".join(cur))
    return out
