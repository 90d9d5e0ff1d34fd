"""The bundled ISO 3166-1 alpha-2 list used to check usage locations."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest

from reconciler.countries import ISO_COUNTRIES, country_name, is_country

DATA = Path(__file__).resolve().parent.parent / "reconciler" / "data" / "countries.json"


def test_all_249_assigned_codes() -> None:
    assert len(ISO_COUNTRIES) == 249
    assert all(len(code) == 2 and set(code) <= set(string.ascii_uppercase) for code in ISO_COUNTRIES)
    assert all(name.strip() == name and name for name in ISO_COUNTRIES.values())


def test_data_file_is_sorted_and_matches_the_mapping() -> None:
    data = json.loads(DATA.read_text(encoding="utf-8"))
    assert list(data) == sorted(data)
    assert data == dict(ISO_COUNTRIES)


def test_mapping_is_read_only() -> None:
    with pytest.raises(TypeError):
        ISO_COUNTRIES["XX"] = "Nowhere"  # type: ignore[index]


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("US", "United States of America"),
        ("FR", "France"),
        ("GB", "United Kingdom of Great Britain and Northern Ireland"),
        ("JP", "Japan"),
        ("BN", "Brunei Darussalam"),
        ("AX", "Åland Islands"),
        ("SS", "South Sudan"),
        ("SX", "Sint Maarten (Dutch part)"),
        ("BQ", "Bonaire, Sint Eustatius and Saba"),
        ("AQ", "Antarctica"),
    ],
)
def test_known_codes(code: str, name: str) -> None:
    assert is_country(code)
    assert ISO_COUNTRIES[code] == name
    assert country_name(code.lower()) == name


@pytest.mark.parametrize(
    "code",
    [
        "UK",  # the United Kingdom is GB
        "EU",  # exceptionally reserved, not a country
        "XK",  # Kosovo: user-assigned, not in ISO 3166-1
        "AN",  # Netherlands Antilles: withdrawn 2010
        "YU",  # withdrawn
        "ZZ",
        "fr",  # Graph returns upper case; the policy must too
        "FRA",  # alpha-3
        "F",
        "",
        " FR",
        None,
        250,
    ],
)
def test_not_country_codes(code: object) -> None:
    assert not is_country(code)


def test_country_name_of_unknown_code() -> None:
    assert country_name("ZZ") is None
