"""Throughput and memory of the MIMIC-CXR converter on a synthetic MIMIC-scale layout.

    python bench/bench_data_prep.py                       # 20,000 studies, 64 px images, 1 and 2 workers
    python bench/bench_data_prep.py --studies 2000 --workers 1 2 --image-size 256

Generates a MIMIC-CXR-JPG + reports layout with `verl_ext.testing.synthetic` (no edge cases), then converts it with
each worker count in a fresh process and prints studies/second, the conversion's wall time (planning + shards),
its CPU time (all processes; less sensitive than wall time to other load on the machine), and peak resident memory
of the converter's main process and of its largest worker. The images are small, so
decode time is far below real MIMIC JPEGs (~2,500 x 3,000); resizing up to the pixel budget and encoding are real.
Timings are informative only (CI never runs this as a pass/fail test).

    python bench/bench_data_prep.py --archive-images 2000   # PadChest-GR: split zip in place vs extracted PNGs

The archive mode writes N PNGs both as plain files and as one zip cut into 37 byte pieces (PadChest-GR's
``PadChest_GR.zip.001..037``), then reads every image both ways through the converter's own readers and prints the
ratio (reading in place also saves the extraction step and the disk space of a second copy).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def measure(argv: list[str]) -> None:
    """Child mode: convert, then print timings and peak RSS as JSON on the last line."""
    from verl_ext.data.cli import main

    t0 = time.perf_counter()
    stats = main("mimic_cxr", argv)
    wall = time.perf_counter() - t0
    me, ch = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    own, kids = me.ru_maxrss / 1024, ch.ru_maxrss / 1024
    cpu = me.ru_utime + me.ru_stime + ch.ru_utime + ch.ru_stime
    studies = sum(e["input_studies"] for e in stats["splits"].values())
    samples = sum(e["samples"] for e in stats["splits"].values())
    print(json.dumps({"wall_s": wall, "run_s": stats["seconds"], "studies": studies, "samples": samples,
                      "peak_rss_main_mib": own, "peak_rss_worker_mib": kids, "cpu_s": cpu}))


def bench_archive(n_images: int, work: Path) -> None:
    """Read `n_images` PNGs from a 37-part split zip (in place) and from extracted files; print both and the ratio."""
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    from verl_ext.data.archives import read_member

    rng = np.random.default_rng(0)
    files = work / "extracted"
    files.mkdir(parents=True, exist_ok=True)
    blob = io.BytesIO()
    with zipfile.ZipFile(blob, "w") as zf:  # PNGs are stored compressed already, as in the release
        for i in range(n_images):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (256, 256), dtype=np.uint8)).save(buf, format="PNG")
            (files / f"{i}.png").write_bytes(buf.getvalue())
            zf.writestr(f"PadChest_GR/{i}.png", buf.getvalue())
    data = blob.getvalue()
    step = -(-len(data) // 37)
    parts = []
    for k in range(37):
        parts.append(str(work / f"PadChest_GR.zip.{k + 1:03d}"))
        Path(parts[-1]).write_bytes(data[k * step: (k + 1) * step])
    t0 = time.perf_counter()
    disk = sum(len((files / f"{i}.png").read_bytes()) for i in range(n_images))
    t_disk = time.perf_counter() - t0
    t0 = time.perf_counter()
    zipped = sum(len(read_member(tuple(parts), f"PadChest_GR/{i}.png")) for i in range(n_images))
    t_zip = time.perf_counter() - t0
    assert disk == zipped
    print(f"{n_images} PNGs, {disk / 2**20:.1f} MiB: extracted files {n_images / t_disk:.0f} images/s, split zip in "
          f"place {n_images / t_zip:.0f} images/s, ratio zip/files {t_disk / t_zip:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--studies", type=int, default=20_000, help="approximate number of studies (default: 20000)")
    p.add_argument("--image-size", type=int, default=64, help="side of the synthetic images in pixels (default: 64)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time (default: 1 2)")
    p.add_argument("--min-pixels", type=int, default=262_144, help="converter pixel budget (default: paper's)")
    p.add_argument("--max-pixels", type=int, default=401_408, help="converter pixel budget (default: paper's)")
    p.add_argument("--shard-size", type=int, default=1000)
    p.add_argument("--dir", default=None, help="work folder (default: a temporary one, removed afterwards)")
    p.add_argument("--archive-images", type=int, default=0, metavar="N",
                   help="instead: time reading N PNGs from a split zip in place against extracted files")
    p.add_argument("--_measure", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._measure is not None:
        measure(args._measure)
        return
    if args.archive_images:
        work = Path(args.dir or tempfile.mkdtemp(prefix="bench_archive_"))
        try:
            bench_archive(args.archive_images, work)
        finally:
            if args.dir is None:
                shutil.rmtree(work, ignore_errors=True)
        return

    from verl_ext.testing.synthetic import generate_patients, write_mimic_cxr

    work = Path(args.dir or tempfile.mkdtemp(prefix="bench_data_prep_"))
    try:
        t0 = time.perf_counter()
        patients = generate_patients(max(1, round(args.studies / 2.5)), seed=0, max_studies=4)
        layout = write_mimic_cxr(work / "src", patients, image_size=args.image_size, edge_cases=False,
                                 extra_split_rows=False, chexpert=False)
        n_studies = sum(len(pt.studies) for pt in patients)
        n_images = sum(len(s.images) for pt in patients for s in pt.studies)
        gen = time.perf_counter() - t0
        print(f"generated {n_studies} studies, {n_images} images ({args.image_size} px) in {gen:.1f} s")
        results = []
        for w in args.workers:
            out = work / f"out_w{w}"
            shutil.rmtree(out, ignore_errors=True)
            cmd = [sys.executable, __file__, "--_measure", "--mimic-cxr-jpg", str(layout.paths["jpg_root"]),
                   "--reports", str(layout.paths["reports"]), "--out", str(out), "--workers", str(w), "--no-progress",
                   "--min-pixels", str(args.min_pixels), "--max-pixels", str(args.max_pixels),
                   "--shard-size", str(args.shard_size)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            if proc.returncode != 0:
                print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"conversion with {w} worker(s) failed")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            size = sum(f.stat().st_size for f in out.glob("*.parquet")) / 2**20
            r.update(workers=w, parquet_mib=size, studies_per_s=r["studies"] / r["wall_s"])
            results.append(r)
        print(f"\n{'workers':>7} {'studies':>8} {'samples':>8} {'wall s':>8} {'studies/s':>10} {'CPU s':>8} "
              f"{'main MiB':>9} {'worker MiB':>10} {'parquet MiB':>11}")
        for r in results:
            print(f"{r['workers']:>7} {r['studies']:>8} {r['samples']:>8} {r['wall_s']:>8.1f}"
                  f" {r['studies_per_s']:>10.1f}"
                  f" {r['cpu_s']:>8.1f} {r['peak_rss_main_mib']:>9.0f} {r['peak_rss_worker_mib']:>10.0f}"
                  f" {r['parquet_mib']:>11.1f}")
        if len(results) > 1:
            print(f"speed-up {results[-1]['workers']} vs {results[0]['workers']} workers: "
                  f"{results[-1]['studies_per_s'] / results[0]['studies_per_s']:.2f}x (on {os.cpu_count()} cores)")
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
