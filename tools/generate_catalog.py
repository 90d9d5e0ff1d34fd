#!/usr/bin/env python3
"""Generate reconciler/data/catalog.json from Microsoft's product and service-plan table.

Usage:
    python tools/generate_catalog.py [CSV] [--out FILE]

CSV defaults to ../shared/reference/licensing-service-plan-reference.csv (Microsoft's
"Product names and service plan identifiers for licensing" CSV: UTF-8 with a BOM, header
Product_Display_Name,String_Id,GUID,Service_Plan_Name,Service_Plan_Id,
Service_Plans_Included_Friendly_Names, one row per SKU x service plan). The output is
deterministic (sorted, compact, one SKU or plan per line so that a refresh diffs well), and a
test regenerates it and compares it with the committed file.

What the 2025-12 copy of the table contains, and how it is handled here:
- 5,457 rows, 569 SKU ids (skuId), 568 part numbers, 723 plan ids, 730 distinct plan-name spellings.
- Stray whitespace: trailing spaces and no-break spaces (U+00A0) in part numbers
  ("AAD_PREMIUM_USGOV_GCCHIGH ", "MCOCAP_FACULTY\\u00a0"), in a SKU GUID
  ("420c7602-...\\u00a0"), tabs inside a plan name ("Virtualization \\tRights \\tfor ...") and
  no-break spaces inside names ("O365_w/o\\u00a0Teams\\u00a0Bundle_M3"). Every field is stripped
  and internal whitespace runs collapse to one space; lookups ignore whitespace and case
  (reconciler.catalog.name_key).
- One part number with two SKU ids: MCOPSTN5 is both 54a152dc-... ("Skype for Business PSTN
  Domestic Calling (120 Minutes)") and d43177b5-... ("Skype for Business PSTN Calling Domestic
  Small"). Both SKUs are kept (lookup by id finds each); lookup by part number picks the SKU with
  the most plans, then the lowest id (recorded in "preferredSkuIds"). The id 54a152dc-... is also
  used as a service-plan id (the SKU's own plan MCOPSTN5); SKU ids and plan ids are separate
  namespaces, so that is harmless.
- One plan name with two plan ids: PROJECT_ESSENTIALS is 1259157c-... in 16 rows and
  f944d685-... in one (D365_SALES_PRO). The broken cell "EXCHANGE_S_FOUNDATION
  PBI_PREMIUM_EM1_ADDON" names both 113feb6c-... (Exchange Foundation) and a64b30ba-... (the
  Power BI Premium EM1 plan, which has no other name in the table). Every id is kept; a name
  maps to the id whose usual name it is, then the id it is used with most, then the lowest id
  (recorded in "preferredPlanIds"). Use Catalog.plan_in_sku to resolve a name inside one SKU.
- One plan id under several names: typos and variants such as RMS_S_ENTERPRISE / "RMS_S_ENTERPRISE)",
  EXCHANGE_S_FOUNDATION_GOV / EXCHANGE_FOUNDATION_GOV, Deskless / DESKLESS, "ATP_ENTERPRISE "
  (trailing space), and friendly names in the name column ("Project Online for Education" for
  SHAREPOINT_PROJECT_EDU). A plan's name is the spelling used most for its id; the others are
  kept as aliases, so they still resolve.
- Friendly names vary per row for 140 plan ids (case, rebranding: "Azure Active Directory Premium
  P1" vs "Microsoft Entra ID P1", and a few copy-paste errors such as "DYNAMICS 365 FOR CUSTOMER
  SERVICE" on SHAREPOINTENTERPRISE). The most frequent one wins, ties broken alphabetically.
- The same (SKU, plan) pair appears twice in 9 places; a SKU's planIds keep the first occurrence,
  in table order.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CSV = ROOT.parent / "shared" / "reference" / "licensing-service-plan-reference.csv"
DEFAULT_OUT = ROOT / "reconciler" / "data" / "catalog.json"
HEADER = (
    "Product_Display_Name",
    "String_Id",
    "GUID",
    "Service_Plan_Name",
    "Service_Plan_Id",
    "Service_Plans_Included_Friendly_Names",
)
FORMAT_VERSION = 1


def clean(text: str) -> str:
    """Strip and collapse whitespace (tabs, no-break spaces) to single spaces."""
    return " ".join(text.split())


def name_key(name: str) -> str:
    # Same normalisation as reconciler.catalog.name_key (kept here so the tool runs stand-alone);
    # tests check the two agree.
    return "".join(name.split()).casefold()


def _most_common(counter: Counter[str]) -> str:
    return min(counter.items(), key=lambda item: (-item[1], item[0]))[0]


class CsvFormatError(Exception):
    pass


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        fields = tuple(clean(f) for f in (reader.fieldnames or ()))
        if fields != HEADER:
            raise CsvFormatError(f"{path}: unexpected header {fields!r}; expected {HEADER!r}")
        rows: list[dict[str, str]] = []
        for line, raw in enumerate(reader, start=2):
            row = {clean(k): clean(v or "") for k, v in raw.items() if k is not None}
            if not all(row.get(h) for h in ("String_Id", "GUID", "Service_Plan_Name", "Service_Plan_Id")):
                raise CsvFormatError(f"{path}:{line}: empty part number, SKU id, plan name or plan id")
            row["GUID"] = row["GUID"].lower()
            row["Service_Plan_Id"] = row["Service_Plan_Id"].lower()
            rows.append(row)
    return rows


def build(rows: Sequence[dict[str, str]], source_name: str, digest: str) -> tuple[dict[str, Any], list[str]]:
    """Return the catalog document and a list of notes about oddities found."""
    notes: list[str] = []
    sku_part: dict[str, Counter[str]] = defaultdict(Counter)
    sku_product: dict[str, Counter[str]] = defaultdict(Counter)
    sku_plans: dict[str, list[str]] = defaultdict(list)
    plan_names: dict[str, Counter[str]] = defaultdict(Counter)
    plan_friendly: dict[str, Counter[str]] = defaultdict(Counter)
    duplicates = 0
    for row in rows:
        sku_id, plan_id = row["GUID"], row["Service_Plan_Id"]
        sku_part[sku_id][row["String_Id"]] += 1
        sku_product[sku_id][row["Product_Display_Name"]] += 1
        if plan_id in sku_plans[sku_id]:
            duplicates += 1
        else:
            sku_plans[sku_id].append(plan_id)
        plan_names[plan_id][row["Service_Plan_Name"]] += 1
        if row["Service_Plans_Included_Friendly_Names"]:
            plan_friendly[plan_id][row["Service_Plans_Included_Friendly_Names"]] += 1
    if duplicates:
        notes.append(f"{duplicates} repeated (SKU, plan) rows ignored")

    skus: list[dict[str, Any]] = []
    part_ids: dict[str, list[str]] = defaultdict(list)
    for sku_id in sku_part:
        if len(sku_part[sku_id]) > 1:
            notes.append(f"SKU {sku_id} has several part numbers: {sorted(sku_part[sku_id])}")
        part = _most_common(sku_part[sku_id])
        part_ids[name_key(part)].append(sku_id)
        skus.append(
            {
                "partNumber": part,
                "skuId": sku_id,
                "productName": _most_common(sku_product[sku_id]),
                "planIds": sku_plans[sku_id],
            }
        )
    skus.sort(key=lambda s: (name_key(s["partNumber"]), s["skuId"]))

    preferred_skus: dict[str, str] = {}
    for key, ids in sorted(part_ids.items()):
        if len(ids) > 1:
            best = min(ids, key=lambda i: (-len(sku_plans[i]), i))
            preferred_skus[key] = best
            notes.append(f"part number {key!r} names SKUs {sorted(ids)}; lookup by name gives {best}")

    plans: list[dict[str, Any]] = []
    canonical: dict[str, str] = {}
    key_ids: dict[str, Counter[str]] = defaultdict(Counter)
    for plan_id, names in plan_names.items():
        canonical[plan_id] = _most_common(names)
        for name, count in names.items():
            key_ids[name_key(name)][plan_id] += count
        aliases = sorted(
            {n for n in names if name_key(n) != name_key(canonical[plan_id])}, key=lambda n: (name_key(n), n)
        )
        if aliases:
            notes.append(f"plan {plan_id} ({canonical[plan_id]}) is also spelled {aliases}")
        entry: dict[str, Any] = {
            "id": plan_id,
            "name": canonical[plan_id],
            "friendlyName": _most_common(plan_friendly[plan_id])
            if plan_friendly[plan_id]
            else canonical[plan_id],
        }
        if aliases:
            entry["aliases"] = aliases
        plans.append(entry)
    plans.sort(key=lambda p: (name_key(p["name"]), p["id"]))

    preferred_plans: dict[str, str] = {}
    for key, uses in sorted(key_ids.items()):
        if len(uses) > 1:
            chosen = min(uses, key=lambda i: (name_key(canonical[i]) != key, -uses[i], i))
            preferred_plans[key] = chosen
            notes.append(f"plan name {key!r} is used for ids {sorted(uses)}; lookup by name gives {chosen}")

    document = {
        "formatVersion": FORMAT_VERSION,
        "source": {"file": source_name, "sha256": digest, "rows": len(rows)},
        "preferredSkuIds": preferred_skus,
        "preferredPlanIds": preferred_plans,
        "skus": skus,
        "plans": plans,
    }
    return document, notes


def render(document: dict[str, Any]) -> str:
    """Compact JSON, one SKU or plan per line."""

    def dump(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=False)

    def lines(items: Iterable[Any]) -> str:
        return ",\n".join(dump(item) for item in items)

    head = {k: v for k, v in document.items() if k not in ("skus", "plans")}
    out = dump(head)[:-1]
    out += ',\n"skus":[\n' + lines(document["skus"]) + "\n]"
    out += ',\n"plans":[\n' + lines(document["plans"]) + "\n]}\n"
    return out


def generate(csv_path: Path) -> tuple[str, list[str]]:
    data = csv_path.read_bytes()
    rows = read_rows(csv_path)
    document, notes = build(rows, csv_path.name, hashlib.sha256(data).hexdigest())
    return render(document), notes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("csv", nargs="?", type=Path, default=DEFAULT_CSV, help="the product table CSV")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write catalog.json")
    parser.add_argument("--quiet", action="store_true", help="do not print the notes about the table")
    args = parser.parse_args(argv)
    try:
        text, notes = generate(args.csv)
    except OSError as exc:
        print(f"error: cannot read {args.csv}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except (CsvFormatError, UnicodeDecodeError, csv.Error) as exc:
        print(f"error: {args.csv}: {exc}", file=sys.stderr)
        return 3
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8", newline="\n")
    if not args.quiet:
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        document = json.loads(text)
        print(
            f"wrote {args.out}: {len(document['skus'])} SKUs, {len(document['plans'])} plans, {len(text.encode())} bytes",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
