"""Every Flux program the builders can produce, checked by the real Flux parser (WebAssembly, Node.js).

For hostile names and values in every position (bucket, measurement, tag key, tag value, field name),
the program must parse without error, contain no string interpolation, and every string literal in
its syntax tree must be exactly the intended value, in order. A hand-written decoder once accepted
``\\"`` after ``$``, which the real scanner does not (``$`` swallows the next character).
"""

from __future__ import annotations

import os
import random

import pytest

from influx_assets.influxdb.client import flux
from influx_assets.influxdb.client.slice import MeasurementSlice
from influx_assets_tests.flux_parser_client import FluxParse, flux_parser_available, parse_flux

HOSTILE = [
    'x" OR 1=1',
    ") |> drop(",
    "${token}",
    "$",
    '$"',
    "$\\",
    '$\\" or true) //',
    'say "$"',
    "$${",
    "\\${x}",
    "a\nb",
    "a\r\nb",
    "tab\tend",
    "back\\slash",
    '\\"',
    "",
    "日本 é☃ 🚀",
    "} ${ {",
]
#: Strings every ``select_window`` program ends with (pivot and drop).
PIVOT_AND_DROP = ["_time", "_field", "_value", "_start", "_stop", "_measurement"]


@pytest.fixture(scope="module", autouse=True)
def real_parser() -> None:
    reason = flux_parser_available()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but the real Flux parser is missing: {reason}")
    pytest.skip(reason)


def _random_hostile(count: int, seed: int = 20261202) -> list[str]:
    rng = random.Random(seed)
    alphabet = ['"', "\\", "$", "{", "}", "\n", "\r", "\t", " ", "a", "é", "(", ")", "/", "|", ">"]
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))) for _ in range(count)]


def _time_strings(where: MeasurementSlice) -> list[str]:
    return [flux.rfc3339_nano(where.start_ns), flux.rfc3339_nano(where.end_ns)]


def _assert_parses_to(program: str, parsed: FluxParse, expected: list[str]) -> None:
    assert parsed.errors == [], f"{parsed.errors} in:\n{program}"
    assert parsed.interpolations == 0, program
    assert parsed.strings == expected, program


def test_every_builder_output_parses_and_carries_exactly_the_intended_strings() -> None:
    values = HOSTILE + _random_hostile(150)
    cases: list[tuple[str, list[str]]] = []
    for i, value in enumerate(values):
        other = values[(i + 7) % len(values)]
        where = MeasurementSlice(
            value or "b", value or "m", start_ns=1_704_067_200_000_000_000, end_ns=1_704_070_800_000_000_000,
            tag_filters=((value or "k", other), ("site", value)), columns=(value or "f", other or "g"),
        )
        window = [where.database, *_time_strings(where), where.measurement]
        tags = [where.tag_filters[0][0], other, "site", value]
        cases.append((flux.select_window(where), [*window, *tags, value or "f", other or "g", *PIVOT_AND_DROP]))
        whole = MeasurementSlice(value or "b", other or "m")
        cases.append((flux.first_per_series(whole), [whole.database, *_time_strings(whole), whole.measurement]))
        cases.append((flux.flux_string(value), [value]))
    results = parse_flux([program for program, _ in cases])
    for (program, expected), parsed in zip(cases, results, strict=True):
        _assert_parses_to(program, parsed, expected)


def test_the_window_ledger_query_for_a_hostile_target_parses() -> None:
    # the ledger reads its measurement filtered by the tag ``target`` = "<database>/<measurement>"
    target = 'telemetry/$"x) or true //'
    where = MeasurementSlice("telemetry", "influx_assets_windows", tag_filters=(("target", target),))
    program = flux.select_window(where)
    [parsed] = parse_flux([program])
    expected = ["telemetry", *_time_strings(where), "influx_assets_windows", "target", target, *PIVOT_AND_DROP]
    _assert_parses_to(program, parsed, expected)


def test_the_parser_harness_reports_errors_and_interpolation() -> None:
    broken, interpolated, old_escape = parse_flux(['from(bucket: "a" |> range(', 'x = "${v}"', 'x = "$\\""'])
    assert broken.errors
    assert interpolated.interpolations == 1 and interpolated.strings == []
    assert old_escape.errors  # what the builders produced before `$` was escaped as \x24
