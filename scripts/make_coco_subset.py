"""Choose the small real-COCO subset that ships in the repository for the tests (tests/data/coco_mini).

    python scripts/make_coco_subset.py SOURCE_FOLDER tests/data/coco_mini [--budget-mb 8]

SOURCE_FOLDER is a COCO-format folder (annotations.json, images/, SOURCE.md with a per-image provenance
table), such as the 158-photo val2017 subset the project was developed against. Images are picked greedily by
what they add per megabyte: categories not yet covered, crowd regions (until there are at least 8) and small
objects (COCO area < 32²). Files and annotation records are copied unchanged (no re-encoding, no edits);
the ``categories`` list stays the full COCO list, so label ids match any COCO model. SOURCE.md is written
beside the subset with the licence and provenance row of every chosen image.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections import defaultdict
from pathlib import Path

SMALL_AREA = 32**2
MIN_CROWD = 8


def choose(annotations: dict, sizes: dict[str, int], budget: int) -> list[dict]:
    """Images chosen greedily by (new categories, crowd until MIN_CROWD, small objects) per byte."""
    by_image: dict[int, list[dict]] = defaultdict(list)
    for ann in annotations["annotations"]:
        by_image[ann["image_id"]].append(ann)
    remaining = {img["id"]: img for img in annotations["images"]}
    chosen: list[dict] = []
    covered: set[int] = set()
    crowd = 0
    used = 0
    while remaining:

        def gain(img: dict, covered: set[int] = covered, crowd: int = crowd) -> float:
            anns = by_image[img["id"]]
            new = len({a["category_id"] for a in anns} - covered)
            crowds = sum(a["iscrowd"] for a in anns) if crowd < MIN_CROWD else 0
            small = sum(1 for a in anns if a["area"] < SMALL_AREA and not a["iscrowd"])
            return (3.0 * new + 5.0 * crowds + 0.5 * small) / sizes[img["file_name"]]

        best = max(remaining.values(), key=lambda img: (gain(img), -img["id"]))
        if gain(best) <= 0:
            break
        del remaining[best["id"]]
        if used + sizes[best["file_name"]] > budget:
            continue
        chosen.append(best)
        used += sizes[best["file_name"]]
        anns = by_image[best["id"]]
        covered |= {a["category_id"] for a in anns}
        crowd += sum(a["iscrowd"] for a in anns)
    return sorted(chosen, key=lambda img: img["id"])


def provenance_rows(source_md: str, files: set[str]) -> tuple[str, list[str]]:
    """The header and the rows of SOURCE.md's per-image table that name one of ``files``."""
    lines = source_md.splitlines()
    header_at = next(i for i, line in enumerate(lines) if line.startswith("| file |"))
    rows = [line for line in lines[header_at + 2 :] if line.startswith("| ") and line.split("|")[1].strip() in files]
    return "\n".join(lines[header_at : header_at + 2]), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--budget-mb", type=float, default=8.0)
    args = parser.parse_args()
    annotations = json.loads((args.source / "annotations.json").read_text())
    sizes = {
        img["file_name"]: (args.source / "images" / img["file_name"]).stat().st_size for img in annotations["images"]
    }
    # the annotation file (segmentations included) and SOURCE.md count against the budget too (~0.4 MB)
    chosen = choose(annotations, sizes, int(args.budget_mb * 1e6) - 500_000)
    ids = {img["id"] for img in chosen}
    subset = {
        **annotations,
        "images": chosen,
        "annotations": [a for a in annotations["annotations"] if a["image_id"] in ids],
    }
    images = args.out / "images"
    if images.exists():
        shutil.rmtree(images)
    images.mkdir(parents=True)
    for img in chosen:
        shutil.copyfile(args.source / "images" / img["file_name"], images / img["file_name"])
    (args.out / "annotations.json").write_text(json.dumps(subset, separators=(",", ":")))

    anns = subset["annotations"]
    licences = {lic["id"]: lic for lic in annotations["licenses"]}
    per_licence = defaultdict(int)
    for img in chosen:
        per_licence[img["license"]] += 1
    header, rows = provenance_rows((args.source / "SOURCE.md").read_text(), {img["file_name"] for img in chosen})
    stats = (
        f"{len(chosen)} photos, {len(anns)} annotations ({sum(a['iscrowd'] for a in anns)} crowd), "
        f"{len({a['category_id'] for a in anns})} of the 80 categories, "
        f"{sum(1 for a in anns if a['area'] < SMALL_AREA and not a['iscrowd'])} small objects (area < 32²), "
        f"{sum(sizes[i['file_name']] for i in chosen) / 1e6:.1f} MB of JPEG"
    )
    text = [
        "# coco_mini: the real COCO photos the tests use",
        "",
        "## What this is",
        "A subset of the **MS-COCO 2017 validation split (val2017)**: original COCO JPEG photographs and their",
        "original `instances_val2017.json` annotation records (bbox, category_id, area, iscrowd, segmentation,",
        "original ids), copied unchanged. The `categories` list is COCO's full list of 80, so label ids match",
        "any COCO model.",
        "",
        f"**Contents:** {stats}.",
        "",
        "## How it was chosen",
        "`python scripts/make_coco_subset.py SOURCE tests/data/coco_mini` picks photos greedily by what each adds per",
        "megabyte: categories not yet covered, crowd regions (until at least 8), small objects. It keeps the subset",
        "under 8 MB. The source was a 158-photo val2017 subset merged from two public GitHub repositories",
        "(Obmutescence/COCO-MINI at 644f29e7c1d2eefd9c4412d39bc5b0ee6fd0afd4 and zzowenzz/COCO_Tiny at",
        "e7a689f7d6d1a1908df287c3e79eccdadfdba1fe), each of which copies images and annotation records from the",
        "official val2017 release without change.",
        "",
        "## Licences",
        "* Annotations: COCO Consortium, **Creative Commons Attribution 4.0** (https://cocodataset.org/#termsofuse).",
        "* Images: each photo keeps the Flickr licence of its owner; `images[i].license` refers to `licenses` in",
        "  annotations.json, and `flickr_url` / `coco_url` say where it came from. The COCO Consortium does not own",
        "  the images' copyright; using them must follow the Flickr Terms of Use. They are here only as test data.",
        "  Counts in this subset:",
    ]
    for lic_id in sorted(per_licence):
        lic = licences[lic_id]
        text.append(f"  * {per_licence[lic_id]} × licence id {lic_id}: {lic['name']} ({lic['url']})")
    text += [
        "",
        "## Per-image provenance",
        "Path inside the source repository is `val2017/<file>`; blob is the git blob id at the commit above; sha256",
        "is of the file here (first 16 hex).",
        "",
        header,
        *rows,
        "",
    ]
    (args.out / "SOURCE.md").write_text("\n".join(text))
    print(stats)


if __name__ == "__main__":
    main()
