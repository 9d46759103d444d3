"""PostgreSQL's value grammars and the image facts: date styles, time zones, locales, limits."""

from __future__ import annotations

import pytest

from workload import guc

ZONES = guc.zone_names(
    [
        "Europe/Paris",
        "UTC",
        "posix/Europe/Paris",
        "right/Europe/Paris",
        "zone.tab",
        "tzdata.zi",
        "leapseconds",
        "leap-seconds.list",
        "posixrules",
        "",
    ]
)
LOCALES = guc.locale_names(["C", "C.utf8", "POSIX", "en_US.utf8", "de_DE@euro", ""])


def test_zone_names_drop_leap_second_zones_and_files_that_are_not_zones():
    assert {"Europe/Paris", "UTC", "posix/Europe/Paris", "posixrules"} == ZONES


def test_locale_names_always_hold_the_builtin_ones():
    assert guc.locale_names([]) == {"C", "POSIX"}
    assert "en_US.utf8" in LOCALES and "" not in LOCALES


@pytest.mark.parametrize(
    "value", ["ISO, MDY", "iso,mdy", "MDY", "DMY, ISO", "German", "ISO, MDY, ISO", " ISO , US "]
)
def test_date_styles_postgresql_reads(value: str):
    assert guc.date_style_error(value) is None


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("ISO, MDY\n", "letters"),
        ("ISO,\u00a0MDY", "letters"),
        ("ISO,\tMDY", "letters"),
        ('"ISO"', "letters"),
        ("ISO, SQL", "styles"),
        ("ISO, DMY, MDY", "orders"),
        ("ISO MDY", "unknown word 'iso mdy'"),
        ("ISO,", "empty"),
        ("POSTGRESQL", "unknown"),
        ("DEFAULT", "unknown"),
    ],
)
def test_date_styles_refused(value: str, why: str):
    assert why in str(guc.date_style_error(value))


@pytest.mark.parametrize(
    "value",
    [
        "UTC",
        "europe/paris",
        "EUROPE/PARIS",
        "posix/Europe/Paris",
        "GMT",
        "gmt",
        "5",
        "-5",
        "+5.5",
        "167.99",
        "EST5",
        "FOOBAR0",
        "<+03>-3",
        "XXX3:30",
        "XXX3:00:00",
        "XXX3YYY",
        "XXX3YYY2",
        "XXX3YYY,M3.2.0,M11.1.0",
        "XXX3YYY,M3.2.0/-1,M11.1.0/167",
        "XXX3YYY,J1,J365",
        "XXX3YYY,0,365",
    ],
)
def test_time_zones_postgresql_accepts(value: str):
    assert guc.time_zone_error(value, ZONES) is None


@pytest.mark.parametrize(
    "value",
    [
        "Europe/Nowhere",
        "right/Europe/Paris",
        "zone.tab",
        "leapseconds",
        "Europe",
        "Europe//Paris",
        "/UTC",
        "UTC\n",
        "UTC ",
        "168",
        "inf",
        "1e1",
        "PST",
        "F0",
        "<ab>3",
        "Europe/Nowhere5",
        "XXX168",
        "XXX3:00:30",
        "XXX3YYY,366,1",
        "XXX3YYY,J0,J1",
        "XXX3YYY,M13.1.0,M1.1.0",
        "XXX3YYY;M3.2.0,M11.1.0",
        "XXX3YYY,M3.2.0",
        "XXX3YYY,M3.2.0,M11.1.0x",
        "XXX3YYY,M3.2.0/168,M11.1.0",
        "A" * 300 + "3",
        "Europe/Paris\u00a0",
    ],
)
def test_time_zones_postgresql_refuses_or_the_charm_refuses_on_purpose(value: str):
    assert guc.time_zone_error(value, ZONES) is not None


def test_a_time_zone_name_needs_the_image_but_its_shape_does_not():
    assert guc.time_zone_syntax_error("Europe/Nowhere") is None
    assert guc.time_zone_error("Europe/Nowhere", ZONES) == "no such time zone in the image"
    assert guc.time_zone_error("Europe/Paris", frozenset()) == "no such time zone in the image"
    assert guc.time_zone_error("XXX3", frozenset()) is None  # a POSIX rule needs no file


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("C", True),
        ("POSIX", True),
        ("C.UTF-8", True),
        ("C.utf-8", True),
        ("en_US.UTF-8", True),
        ("en_US.utf8", True),
        ("de_DE@euro", True),
        ("en_US.U-T-F-8", False),
        ("en_US", False),
        ("en_us.utf8", False),
        ("fr_FR.UTF-8", False),
        ("C.utf8@x", False),
        ("c", False),
    ],
)
def test_locales_must_exist_in_the_image(value: str, accepted: bool):
    assert (guc.locale_error(value, LOCALES) is None) is accepted


def test_stack_depth_leaves_postgresqls_margin_under_the_limit():
    assert guc.stack_depth_error(7680, 8192) is None
    assert guc.stack_depth_error(7681, 8192) is not None
    assert guc.stack_depth_error(2_000_000, None) is None  # unlimited


def test_catalog_names_follow_the_default_search_path_and_fold_case():
    configs = frozenset({"pg_catalog.english", "public.mine", "other.theirs"})
    for name in ("english", "English", "pg_catalog.english", "mine", "other.theirs"):
        assert guc.text_search_config_error(name, configs) is None, name
    for name in ("theirs", "public.english", "nonexistent"):
        assert guc.text_search_config_error(name, configs) is not None, name
    assert guc.table_access_method_error("heap", frozenset({"heap"})) is None
    assert guc.table_access_method_error("columnar", frozenset({"heap"})) is not None
