"""Property: every notebook's parameters are judged before any kernel starts.

For each runbook notebook (found under notebooks/, not listed here), generated
parameter sets mix values built valid (from the notebook's parameters cell, its
example file and the documented forms of each rule) with values built broken
(wrong types, unknown names, hostile text, numbers out of range, ids of the wrong
shape). Each set goes through ``run_notebook``, the path ``runbook run`` takes,
with the kernel starter replaced by a spy: a broken set must end in a
``ParameterError`` naming each broken parameter and the form expected, with no
kernel started; a valid set must reach the kernel start.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from property_strategies import (
    HOSTILE_CHARS,
    PROPERTY_SETTINGS,
    RECORD_ID,
    Given,
    go_together,
    broken_by_type,
    broken_raw,
    free_text,
    inject,
)
from property_world import (
    GOOD_RECORDS,
    NOTEBOOKS,
    REPORT_RECORD,
    RUN_ENVIRONMENT,
    STAGING_RECORD,
    World,
    build_world,
    seeds_of,
    valid_given,
)

from opslib._errors import ParameterError
from opslib._notebook import (
    NOTEBOOK_FOLDERS,
    ParameterSpec,
    read_parameters,
    runbook_name,
)
from opslib._params import NAME_RULES, validate_params
from opslib._runner import check_run_request, run_notebook


class KernelStartReached(Exception):
    """Raised by the spy in place of starting a kernel."""


STARTS: list[tuple[object, ...]] = []


class SpyWarmer:
    """Stands in for the kernel starter: notes the call and stops the run there."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        STARTS.append(args)
        raise KernelStartReached


def papermill_reached(*args: object, **kwargs: object) -> None:
    raise AssertionError("papermill was reached, so the kernel spy was bypassed")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The test world (see ``build_world``), with the kernel starter spied."""
    world = build_world(tmp_path_factory.mktemp("properties"))
    with pytest.MonkeyPatch.context() as patch:
        world.enter(patch)
        patch.setattr("opslib._runner.KernelWarmer", SpyWarmer)
        # should the kernel start move elsewhere, fail rather than run a notebook
        patch.setattr("opslib._runner._run_papermill", papermill_reached)
        yield world


def unknown_names(specs: Mapping[str, ParameterSpec]) -> st.SearchStrategy[str]:
    near = [
        variant
        for name in specs
        for variant in (name.upper(), name + "s", name[:-1], name + " ", "-" + name)
    ]
    return st.one_of(
        st.from_regex(r"[a-z][a-z0-9_]{0,24}", fullmatch=True),
        st.sampled_from(near),
        inject(st.sampled_from(list(specs) or ["x"]), HOSTILE_CHARS),
    ).filter(lambda name: name not in specs)


RECORD_LOOKUP_BREAKERS = st.sampled_from(
    [
        "20991231T000000Z-nothing-here",  # no such record
        STAGING_RECORD,  # another environment
        REPORT_RECORD,  # a report, not an incident record
        "20261201T1",  # a prefix of two records
    ]
)


@st.composite
def broken_given(
    draw: st.DrawFn, name: str, spec: ParameterSpec, world: World
) -> Given:
    if name == "environment":
        other = st.one_of(
            st.sampled_from(
                ["staging", "production", "Sandbox", " sandbox", "sandbox\n"]
            ),
            free_text(30).filter(lambda t: t != RUN_ENVIRONMENT),
            broken_by_type("str"),
        )
        value = draw(other)
        raw = isinstance(value, str) and draw(st.booleans())
        return Given(name, value, raw=raw, valid=False, phase=0)
    kinds = ["type"]
    kinds += ["rule"] if name in world.broken or name == "record_ids" else []
    kinds += ["text"] if spec.type_name in ("int", "float", "bool") else []
    kind = draw(st.sampled_from(kinds))
    if kind == "type":
        return Given(name, draw(broken_by_type(spec.type_name)), raw=False, valid=False)
    if kind == "text":
        return Given(name, draw(broken_raw(spec.type_name)), raw=True, valid=False)
    if name == "record_ids":
        return draw(broken_record_ids())
    value = draw(world.broken[name])
    raw = spec.type_name in ("str", "int") and draw(st.booleans())
    return Given(name, str(value) if raw else value, raw=raw, valid=False)


@st.composite
def broken_record_ids(draw: st.DrawFn) -> Given:
    good = draw(st.lists(st.sampled_from(GOOD_RECORDS), unique=True))
    kind = draw(st.sampled_from(["lookup", "prefix", "twice", "shape", "too-many"]))
    if kind == "lookup":
        value = good + [draw(RECORD_LOOKUP_BREAKERS)]
        return Given("record_ids", value, raw=False, valid=False, phase=2)
    if kind == "prefix":
        # one record twice: by its id and by a prefix of it
        first = GOOD_RECORDS[0]
        value = [first, first[: draw(st.integers(9, len(first) - 1))]]
        return Given("record_ids", value, raw=False, valid=False, phase=2)
    if kind == "twice":
        value = [*good, GOOD_RECORDS[0], GOOD_RECORDS[0]]
    elif kind == "shape":
        value = good + [draw(st.sampled_from(["", "INC-42", "2026-12-01", "20261201"]))]
    else:
        value = draw(st.lists(RECORD_ID, min_size=21, max_size=25, unique=True))
    return Given("record_ids", value, raw=False, valid=False)


@st.composite
def run_requests(
    draw: st.DrawFn,
    specs: Mapping[str, ParameterSpec],
    world: World,
    seeds: Mapping[str, list[object]],
) -> list[Given]:
    """A parameter set: some of the notebook's names, about half of the sets with
    one to three broken values or unknown names."""
    chosen = draw(st.lists(st.sampled_from(list(specs)), unique=True))
    spoiled: set[str] = set()
    unknown: list[str] = []
    if draw(st.booleans()):
        spoiled = (
            set(draw(st.lists(st.sampled_from(chosen), unique=True, max_size=3)))
            if chosen
            else set()
        )
        unknown = draw(
            st.lists(
                unknown_names(specs),
                unique=True,
                min_size=0 if spoiled else 1,
                max_size=2,
            )
        )
    givens = [
        draw(broken_given(name, specs[name], world))
        if name in spoiled
        else draw(valid_given(name, specs[name], world, seeds.get(name, [])))
        for name in chosen
    ]
    givens += [
        Given(
            name, draw(st.one_of(free_text(10), st.integers())), raw=False, valid=False
        )
        for name in unknown
    ]
    return givens


def offender(
    problem: str, broken: list[Given], specs: Mapping[str, ParameterSpec]
) -> str:
    """The broken parameter a problem line is about; fails when it names none."""
    for item in broken:
        if item.name in specs and problem.startswith(f"{item.name}: "):
            return item.name
        if item.name not in specs and problem.startswith(
            f"unknown parameter {item.name!r}"
        ):
            return item.name
    raise AssertionError(f"a problem about no broken parameter: {problem!r}")


def assert_names_the_broken(
    problems: list[str], broken: list[Given], specs: Mapping[str, ParameterSpec]
) -> None:
    first = min(item.phase for item in broken)
    named = set()
    for problem in problems:
        named.add(offender(problem, broken, specs))
        assert (
            "expected" in problem
            or "give more of the id" in problem
            or ("this notebook takes" in problem)
        ), problem
    assert {item.name for item in broken if item.phase == first} <= named, problems


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: runbook_name(path))
def test_parameters_are_judged_before_any_kernel_starts(
    notebook: Path, world: World
) -> None:
    specs = read_parameters(notebook)
    unruled = [
        n
        for n in specs
        if n in NAME_RULES and n not in world.valid and n not in ("record_ids",)
    ]
    assert not unruled, f"no generator for the rules of {unruled}; add one"
    examples: list[bool] = []

    @PROPERTY_SETTINGS
    @given(run_requests(specs, world, seeds_of(notebook, specs)))
    def check(givens: list[Given]) -> None:
        assume(go_together(runbook_name(notebook), specs, givens))
        STARTS.clear()
        broken = [item for item in givens if not item.valid]
        examples.append(not broken)
        try:
            run_notebook(
                notebook,
                parameters={item.name: item.value for item in givens},
                raw=frozenset(item.name for item in givens if item.raw),
                environment=RUN_ENVIRONMENT,
                records_dir=world.archive,
            )
        except KernelStartReached:
            assert not broken, f"accepted broken values: {broken}"
            assert len(STARTS) == 1
        except ParameterError as error:
            assert broken, f"refused a valid set: {error.problems}"
            assert STARTS == []
            assert_names_the_broken(error.problems, broken, specs)
        else:
            raise AssertionError("the run neither was refused nor reached a kernel")

    check()
    valid = sum(examples)
    assert len(examples) >= 200
    # both kinds of set were tried (a notebook with one parameter has few valid sets)
    assert valid >= 1 and len(examples) - valid >= 40, (valid, len(examples))


TEXT_RULES = sorted(
    name for name, (type_name, _) in NAME_RULES.items() if type_name == "str"
)
# SQL holds quotes by nature (the guard parses it); every other character stays out.
SQL_HOSTILE = tuple(char for char in HOSTILE_CHARS if char not in "'\"`\\")


@pytest.mark.parametrize("name", TEXT_RULES)
def test_no_text_parameter_takes_a_hostile_character(name: str, world: World) -> None:
    """Whatever a text rule accepts, the same value with a quote, a backslash, a
    control or format character or a line separator inside is refused."""
    hostile = SQL_HOSTILE if name == "sql" else HOSTILE_CHARS
    good = world.valid[name].filter(lambda value: value != "")

    @PROPERTY_SETTINGS
    @given(good, st.sampled_from(hostile), st.data())
    def check(value: str, char: str, data: st.DataObject) -> None:
        where = data.draw(st.integers(0, len(value)))
        spoiled = value[:where] + char + value[where:]
        with pytest.raises(ParameterError) as caught:
            validate_params(**{name: spoiled})
        assert caught.value.problems[0].startswith(f"{name}: got ")
        assert " — expected " in caught.value.problems[0]

    check()


TAKES_RECORD_IDS = [path for path in NOTEBOOKS if "record_ids" in read_parameters(path)]


@pytest.mark.parametrize("notebook", TAKES_RECORD_IDS, ids=runbook_name)
def test_record_ids_the_archive_cannot_use_are_named_with_the_form_expected(
    notebook: Path, world: World
) -> None:
    """Ids of the right shape that name no usable record (none, several, another
    environment's, a report, one record twice) are refused before a kernel."""

    @PROPERTY_SETTINGS
    @given(broken_record_ids().filter(lambda item: item.phase == 2))
    def check(item: Given) -> None:
        with pytest.raises(ParameterError) as caught:
            check_run_request(
                notebook,
                {"record_ids": item.value},
                environment=RUN_ENVIRONMENT,
                records_dir=world.archive,
            )
        for problem in caught.value.problems:
            assert problem.startswith("record_ids: got "), problem
            assert "expected" in problem or "give more of the id" in problem, problem

    check()


def test_every_notebook_folder_is_covered() -> None:
    assert {path.parent.name for path in NOTEBOOKS} == set(NOTEBOOK_FOLDERS)
    assert len(NOTEBOOKS) >= len(NOTEBOOK_FOLDERS)
