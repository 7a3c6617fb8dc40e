"""Prepare diabetes130 for the hospital-consortium example: whole patients, public diagnosis groups.

Reads data/diabetes130/diabetic_data_clean.csv.gz (text as it is; the literal "None" stays a category), keeps
every encounter of ``--patients`` patients drawn at random (all of them with ``--patients 0``), maps the
ICD-9-CM codes of diag_1..3 to their public chapter (the consortium schema's categories: the raw code lists are
data-derived) and drops payer_code and medical_specialty (data-derived category lists too). Each of these is a
public, row-by-row rule that each hospital would apply to its own table; nothing here looks at other rows.

Standard library only, so any python3 runs it.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import random
from pathlib import Path

DROPPED = ("payer_code", "medical_specialty")
DIAGNOSES = ("diag_1", "diag_2", "diag_3")
# The chapters of the ICD-9-CM tabular list: (first, last, label); diabetes (250.xx) is kept apart, as in
# Strack et al. 2014, and is checked before its chapter.
CHAPTERS = (
    (1, 139, "infectious (001-139)"), (140, 239, "neoplasms (140-239)"),
    (240, 279, "endocrine, excl. diabetes (240-279)"), (280, 289, "blood (280-289)"),
    (290, 319, "mental (290-319)"), (320, 389, "nervous system, sense organs (320-389)"),
    (390, 459, "circulatory (390-459)"), (460, 519, "respiratory (460-519)"), (520, 579, "digestive (520-579)"),
    (580, 629, "genitourinary (580-629)"), (630, 679, "pregnancy (630-679)"), (680, 709, "skin (680-709)"),
    (710, 739, "musculoskeletal (710-739)"), (740, 759, "congenital (740-759)"), (760, 779, "perinatal (760-779)"),
    (780, 799, "symptoms, ill-defined (780-799)"), (800, 999, "injury, poisoning (800-999)"),
)


def chapter(code: str) -> str:
    """The public ICD-9-CM chapter of one code ("" stays missing; an unknown code is an error)."""
    code = code.strip()
    if not code:
        return ""
    if code[0] in "Vv":
        return "supplementary V codes (V01-V91)"
    if code[0] in "Ee":
        return "external causes E codes (E000-E999)"
    number = int(float(code))
    if number == 250:
        return "diabetes (250)"
    for first, last, label in CHAPTERS:
        if first <= number <= last:
            return label
    raise ValueError(f"not an ICD-9-CM diagnosis code: {code!r}")


def prepare(source: Path, out: Path, *, patients: int, seed: int) -> tuple[int, int]:
    """Write the prepared table to ``out``; return (patients, encounters) written."""
    with gzip.open(source, "rt", newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        records = list(reader)
    owner = header.index("patient_nbr")
    everyone = sorted({r[owner] for r in records})
    chosen = set(random.Random(seed).sample(everyone, patients)) if 0 < patients < len(everyone) else set(everyone)
    keep = [i for i, name in enumerate(header) if name not in DROPPED]
    diagnoses = {header.index(name) for name in DIAGNOSES}
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([header[i] for i in keep])
        for record in records:
            if record[owner] in chosen:
                writer.writerow([chapter(record[i]) if i in diagnoses else record[i] for i in keep])
                written += 1
    return len(chosen), written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--patients", type=int, default=0, help="patients drawn at random (0 = all 71,518)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    people, rows = prepare(args.source, args.out, patients=args.patients, seed=args.seed)
    print(f"prepare: {people} patients, {rows} encounters -> {args.out}")


if __name__ == "__main__":
    main()
