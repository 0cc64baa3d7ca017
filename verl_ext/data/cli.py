"""Command-line front ends of the five converters (``data_prep/*.py`` call `main`).

Every command writes, under ``--out``: ``<split>-NNNNN.parquet`` shards (split = train, val, test), ``stats.json``
(Table 3's columns per split, every drop reason and note with its count, the configuration), ``_progress/``
(restart markers), and with ``--image-mode path`` an ``images/`` tree of resized copies; then prints a summary.

Exit status: 0 on success; 2 for malformed or missing input (a given input path that does not exist, a file that
is not what its name says or was cut off mid-row, image or report files of which not one of the first studies'
exists: one line naming the path and the problem; the traceback only with ``--debug``); 3 when
the output must not be trusted silently -- no input study found, an output split that had input but kept no row,
or more than ``--max-drop-share`` of a split's (or the run's) distinct input studies dropped -- with one line listing
the top drop causes (``--allow-empty`` accepts such a run; stats.json and the shards are written either way).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from verl_ext.data.common import InputError
from verl_ext.data.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, ImageSpec
from verl_ext.data.pipeline import DataError, PrepConfig, format_summary, outcome_problem, run

# Per dataset: the paper's defaults (EditGRPO App. F and the authors' configs: limit_images 6/6/2/2; IU and
# PadChest-GR fold validation into train; ReXGradient drops studies with more than 6 images). CheXpert Plus
# (DEER/OraPO, MambaXray-VL protocol): frontal + lateral of the study, validation kept apart, no priors.
# max_drop_share: about a third of MIMIC-CXR reports have no FINDINGS (datasets.md 2.4), so half is the alarm
# line; CheXpert Plus reports often lack a findings section (MambaXray-VL's findings split keeps 57,805 of 187,711
# reports; the share without findings is not verified here), so its official-split run gets more room.
DEFAULTS = {
    "mimic_cxr": dict(max_images=6, merge_val=False, max_study_images=None, prior=True, max_drop_share=0.5),
    "rexgradient": dict(max_images=6, merge_val=False, max_study_images=6, prior=False, max_drop_share=0.5),
    "iu_xray": dict(max_images=2, merge_val=True, max_study_images=None, prior=False, max_drop_share=0.5),
    "padchest_gr": dict(max_images=2, merge_val=True, max_study_images=None, prior=True, max_drop_share=0.5),
    "chexpert_plus": dict(max_images=2, merge_val=False, max_study_images=None, prior=False, max_drop_share=0.8),
}


def build_parser(dataset: str, description: str) -> argparse.ArgumentParser:
    d = DEFAULTS[dataset]
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("inputs")
    if dataset == "mimic_cxr":
        g.add_argument("--mimic-cxr-jpg", required=True, metavar="DIR",
                       help="MIMIC-CXR-JPG root: holds mimic-cxr-2.0.0-metadata.csv.gz, mimic-cxr-2.0.0-split.csv.gz "
                            "and files/pNN/pSUBJECT/sSTUDY/<dicom_id>.jpg")
        g.add_argument("--reports", required=True, metavar="DIR_OR_ZIP",
                       help="MIMIC-CXR reports: the extracted folder containing files/pNN/pSUBJECT/sSTUDY.txt, or "
                            "mimic-cxr-reports.zip itself")
    else:
        helps = {
            "rexgradient": "ReXGradient-160K root: metadata/{train,valid,test}_metadata(_view_position).json "
                           "(+ optional *_metadata.csv) and deid_png/",
            "iu_xray": "IU-Xray root: R2Gen annotation.json and images/<id>/{0,1}.png; optionally the Kaggle "
                       "indiana_reports.csv / indiana_projections.csv and OpenI ecgen-radiology/*.xml",
            "padchest_gr": "PadChest-GR root: grounded_reports_*.json, master_table.csv(.zip) and the images as "
                           "released (Padchest_GR_files/PadChest_GR.zip.001 ... read in place, or extracted PNGs) "
                           "plus PadChest_GR_progression_prior_studies/",
            "chexpert_plus": "CheXpert Plus root: df_chexpert_plus_240401.csv and the images (PNG/, from PNG.zip)",
        }
        g.add_argument("--root", required=True, metavar="DIR", help=helps[dataset])
    if dataset == "rexgradient":
        g.add_argument("--image-root", metavar="DIR", default=None,
                       help="where deid_png/ was extracted: the deid_png folder itself or the folder holding it "
                            "(default: looked up beside metadata/, i.e. <root>/deid_png, then inside metadata/)")
    if dataset == "chexpert_plus":
        g.add_argument("--image-root", metavar="DIR", default=None,
                       help="folder the CSV's path_to_image is relative to (default: the first of <root>/PNG/PNG, "
                            "<root>/PNG, <root>/PNGs, <root> that holds the first images)")
        g.add_argument("--split-file", metavar="FILE", default=None,
                       help="use this split instead of the CSV's split column: MambaXray-VL's R2Gen-style "
                            "annotation.json ({train,val,test: [{id, image_path: [...]}, ...]}), which DEER follows, "
                            "or a CSV with columns path_to_image (or study) and split")
        g.add_argument("--target", choices=("findings", "findings_impression"), default="findings",
                       help="the report to generate: the findings section (MambaXray-VL/CXPMRG-Bench, followed by "
                            "DEER; default) or findings then impression")
    if dataset == "iu_xray":
        g.add_argument("--kaggle-dir", metavar="DIR", default=None,
                       help="folder with indiana_reports.csv / indiana_projections.csv (default: --root); they give "
                            "INDICATION, COMPARISON and the view of each image")
        g.add_argument("--openi-dir", metavar="DIR", default=None,
                       help="folder of OpenI <uid>.xml reports, used for INDICATION/COMPARISON when the Kaggle "
                            "reports lack the study (default: <root>/ecgen-radiology)")
    g.add_argument("--out", required=True, metavar="DIR", help="output folder (created; rerunning resumes)")

    g = p.add_argument_group("sample rules")
    g.add_argument("--views", choices=("frontal_lateral", "all"), default="frontal_lateral",
                   help="which images of a study enter the prompt: frontal (PA/AP) and lateral (LATERAL/LL) only, "
                        "or every image (default: %(default)s)")
    if d["prior"]:
        g.add_argument("--no-prior", action="store_true",
                       help="do not add the most recent prior study's images (default: add them)")
    elif dataset == "chexpert_plus":
        g.add_argument("--prior", action="store_true",
                       help="add the images of the patient's previous study (by patient_report_date_order); "
                            "raise --max-images to make room for them (default: none, as DEER and OraPO train)")
    g.add_argument("--max-images", type=int, default=d["max_images"], metavar="N",
                   help="at most N images per sample, the rollout's limit_images (default: %(default)s)")
    g.add_argument("--over-limit", choices=("truncate", "drop"), default="truncate",
                   help="a sample with more than --max-images candidate images: keep the first N by priority "
                        "(current frontal, current lateral, prior frontal, prior lateral, other current, other prior)"
                        ", or drop the study (default: %(default)s)")
    if dataset == "rexgradient":
        g.add_argument("--max-study-images", type=int, default=d["max_study_images"], metavar="N",
                       help="drop studies that have more than N images in total, before any view filter, as the "
                            "paper does; 0 disables (default: %(default)s)")
    g.add_argument("--require-frontal", action="store_true",
                   help="drop studies whose current images include no frontal view (default: keep them)")
    g.add_argument("--merge-val-into-train", action=argparse.BooleanOptionalAction, default=d["merge_val"],
                   help="write the official validation split into train instead of val-*.parquet (default: "
                        "%(default)s; the paper merges it for IU-Xray and PadChest-GR, not for ReXGradient, and does "
                        "not say for MIMIC-CXR)")
    g.add_argument("--missing-value", default="N/A",
                   help="text after INDICATION:/TECHNIQUE:/COMPARISON: when the study lacks the section "
                        "(default: %(default)s)")
    if dataset == "mimic_cxr":
        g.add_argument("--split-file", metavar="FILE", default=None,
                       help="R2Gen's mimic_cxr/annotation.json: its split (270,790 / 2,130 / 3,858) and sample unit "
                            "(one image per sample, R2Gen's report as the target, no priors), the protocol DEER and "
                            "the R2Gen line of work use (default: the official split, one sample per study)")
        g.add_argument("--prior-requires-findings", action="store_true",
                       help="only studies with a FINDINGS section may serve as a prior (reads every report first; "
                            "default: any earlier study of the patient in the same split)")
        g.add_argument("--no-context-fallbacks", action="store_true",
                       help="do not use HISTORY for a missing INDICATION, nor EXAMINATION for a missing TECHNIQUE")

    g = p.add_argument_group("images")
    g.add_argument("--image-mode", choices=("bytes", "path"), default="bytes",
                   help="bytes: resized encoded images inside the parquet ({'bytes': ...}); path: resized copies "
                        "under <out>/images and their absolute paths ({'image': path}) (default: %(default)s)")
    g.add_argument("--min-pixels", type=int, default=DEFAULT_MIN_PIXELS,
                   help="smallest image area after resizing (default: %(default)s = 512*512, the paper's)")
    g.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="largest image area after resizing (default: %(default)s = 512*28*28, the paper's)")
    g.add_argument("--image-format", choices=("jpeg", "png"), default="jpeg",
                   help="encoding of stored images (default: %(default)s)")
    g.add_argument("--jpeg-quality", type=int, default=95, help="JPEG quality (default: %(default)s)")

    g = p.add_argument_group("execution")
    g.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes (default: %(default)s)")
    g.add_argument("--shard-size", type=int, default=1000, metavar="N",
                   help="studies per parquet shard; finished shards are skipped on rerun (default: %(default)s)")
    g.add_argument("--row-group-size", type=int, default=64, metavar="N",
                   help="rows per parquet row group; bounds each worker's memory (default: %(default)s)")
    g.add_argument("--strict", action="store_true",
                   help="stop with an error at the first data fault (missing/unreadable image or report, metadata "
                        "pointing nowhere, malformed record) instead of counting it")
    g.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N studies of each split "
                                                                        "(for trying things out)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--max-drop-share", type=float, default=d["max_drop_share"], metavar="F",
                   help="fail (exit 3) when a split, or the whole run, drops more than this share of its input "
                        "studies (default: %(default)s)")
    g.add_argument("--allow-empty", action="store_true",
                   help="accept a run with an empty split or too many drops (exit 0 instead of 3)")
    g.add_argument("--debug", action="store_true", help="show the Python traceback of an input error")
    return p


# Input paths per flag: what must exist before anything is read (argparse dest, flag, kind).
_INPUT_PATHS = (("mimic_cxr_jpg", "--mimic-cxr-jpg", "dir"), ("reports", "--reports", "any"), ("root", "--root", "dir"),
                ("image_root", "--image-root", "dir"), ("kaggle_dir", "--kaggle-dir", "dir"),
                ("openi_dir", "--openi-dir", "dir"), ("split_file", "--split-file", "file"))


def check_input_paths(args: argparse.Namespace) -> None:
    """`InputError` naming the first given input path that does not exist (or is a file where a folder is needed):
    a typo in a path must stop the run at once, not turn into an empty dataset or missing context lines."""
    for dest, flag, kind in _INPUT_PATHS:
        value = getattr(args, dest, None)
        if value is None:
            continue
        path = Path(value)
        if not path.exists():
            raise InputError(f"{flag} {value}: no such {'file' if kind == 'file' else 'folder'}")
        if kind == "dir" and not path.is_dir():
            raise InputError(f"{flag} {value}: not a folder")
        if kind == "file" and not path.is_file():
            raise InputError(f"{flag} {value}: not a file")


def config_from_args(args: argparse.Namespace, dataset: str, context_fields: tuple[str, ...]) -> PrepConfig:
    if args.min_pixels > args.max_pixels:
        raise SystemExit(f"--min-pixels {args.min_pixels} is above --max-pixels {args.max_pixels}")
    if args.max_images < 1:
        raise SystemExit("--max-images must be at least 1")
    if not 0.0 <= args.max_drop_share <= 1.0:
        raise SystemExit(f"--max-drop-share {args.max_drop_share} is not between 0 and 1")
    return PrepConfig(
        out_dir=str(Path(args.out).resolve()),
        dataset=dataset,
        image=ImageSpec(min_pixels=args.min_pixels, max_pixels=args.max_pixels, format=args.image_format,
                        quality=args.jpeg_quality),
        image_mode=args.image_mode,
        views=args.views,
        include_prior=(DEFAULTS[dataset]["prior"] and not getattr(args, "no_prior", False))
        or getattr(args, "prior", False),
        max_images=args.max_images,
        over_limit=args.over_limit,
        max_study_images=getattr(args, "max_study_images", 0) or None,
        require_frontal=args.require_frontal,
        merge_val_into_train=args.merge_val_into_train,
        context_fields=context_fields,
        missing_value=args.missing_value,
        context_fallbacks=not getattr(args, "no_context_fallbacks", False),
        prior_requires_findings=getattr(args, "prior_requires_findings", False),
        shard_size=args.shard_size,
        row_group_size=args.row_group_size,
        workers=args.workers,
        strict=args.strict,
        limit=args.limit,
        progress=not args.no_progress,
    )


def main(dataset: str, argv: list[str] | None = None) -> dict:
    """Parse `argv`, convert, write stats.json, print the summary; returns the stats (SystemExit 2/3 on failure,
    see the module docstring)."""
    from verl_ext.data import chexpert_plus, iu_xray, mimic, mimic_r2gen, padchest_gr, rexgradient

    modules = {"mimic_cxr": mimic, "rexgradient": rexgradient, "iu_xray": iu_xray, "padchest_gr": padchest_gr,
               "chexpert_plus": chexpert_plus}
    module = modules[dataset]
    parser = build_parser(dataset, (module.__doc__ or "").strip())
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = config_from_args(args, dataset, module.CONTEXT_FIELDS)
    try:
        check_input_paths(args)
        if dataset == "mimic_cxr" and args.split_file:
            plan = mimic_r2gen.plan_mimic_r2gen(args.mimic_cxr_jpg, args.reports, args.split_file, cfg)
        elif dataset == "mimic_cxr":
            plan = mimic.plan_mimic(args.mimic_cxr_jpg, args.reports, cfg)
        elif dataset == "rexgradient":
            plan = rexgradient.plan_rexgradient(args.root, cfg, image_root=args.image_root)
        elif dataset == "iu_xray":
            plan = iu_xray.plan_iu_xray(args.root, cfg, kaggle_dir=args.kaggle_dir, openi_dir=args.openi_dir)
        elif dataset == "padchest_gr":
            plan = padchest_gr.plan_padchest_gr(args.root, cfg)
        else:
            plan = chexpert_plus.plan_chexpert_plus(args.root, cfg, image_root=args.image_root,
                                                    split_file=args.split_file, target=args.target)
        stats = run(plan, cfg)
    except (InputError, DataError, FileNotFoundError, NotADirectoryError, ValueError, KeyError) as e:
        if args.debug:
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    print(format_summary(stats))
    print(f"wrote {Path(cfg.out_dir) / 'stats.json'}")
    problem = outcome_problem(stats, args.max_drop_share)
    if problem:
        if not args.allow_empty:
            print(f"error: {problem} (see {Path(cfg.out_dir) / 'stats.json'}; --allow-empty accepts this)",
                  file=sys.stderr)
            raise SystemExit(3)
        print(f"warning: {problem} (accepted: --allow-empty)", file=sys.stderr)
    return stats


def load_stats(out_dir: str | Path) -> dict:
    return json.loads(Path(out_dir, "stats.json").read_text())
