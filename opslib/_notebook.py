"""Runbook notebooks as files: where they live, what they take, what they showed.

The runner knows a notebook only through this module: its path, its runbook name,
the parameters its cell tagged ``parameters`` declares and, once executed, the
verdict and action outputs it displayed and the per-cell state papermill kept.
Nothing here starts a kernel or imports the notebook's code; the parameters cell
is read with ``ast``.

A parameters cell holds one line per value::

    incident_id: str = ""  # the incident this run belongs to, such as INC-42
    lookback: str = "1h"  # how far back to look, such as 30m, 6h or 2d
    apply: bool = False  # change anything at all?
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._config import ENVIRONMENTS_VARIABLE, find_environments_dir
from ._errors import ConfigError, RunError
from ._params import SUPPORTED_TYPES, is_of_type

if TYPE_CHECKING:  # nbformat costs ~1 s to import; runs import it lazily
    import nbformat

logger = logging.getLogger(__name__)

NOTEBOOK_FOLDERS = ("incidents", "procedures")
PARAMETERS_TAG = "parameters"

_NUMBER_PREFIX = re.compile(r"^\d+-")
VERDICT_MIME = "application/vnd.opslib.verdict+json"
ACTION_MIME = "application/vnd.opslib.action+json"
# A report's list of the records it refers to; the runner files it as refers_to.
REFERENCES_MIME = "application/vnd.opslib.references+json"
# The id of the record a run will become, for the kernel (reports name files by it).
RECORD_ID_VARIABLE = "RUNBOOK_RECORD_ID"
VERDICT_KEYS = (
    "runbook",
    "status",
    "cause",
    "summary",
    "evidence",
    "next_action",
    "gated_step",
    "findings",
)
# papermill's own tag for its error banner cells, so tools that know it see ours.
_ERROR_TAG = "papermill-error-cell-tag"
_FAILURE_TEXT = {
    "kernel-died": "the kernel died",
    "timeout": "a cell ran past the timeout",
    "kernel-missing": "the kernel could not be found",
    "runner-error": "the runner failed",
}


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter a notebook declares in its parameters cell.

    Attributes:
        name: the variable name, such as ``incident_id``.
        type_name: one of ``str``, ``int``, ``float``, ``bool`` or ``list[str]``.
        default: the literal default written in the cell.
        help: the trailing comment of the line, without the ``#``; may be empty.
    """

    name: str
    type_name: str
    default: object
    help: str = ""


def find_project_root() -> Path:
    """Return the project checkout: the folder holding ``notebooks/``.

    The first folder with ``notebooks/incidents`` or ``notebooks/procedures`` among:
    the folder two levels above the environments folder (``<root>/parameters/
    environments``), the working directory and its parents, and the folder above
    the installed package. The search matters when ``RUNBOOK_ENVIRONMENTS`` points
    outside the checkout, as the sandbox's own environment files do. When no
    folder qualifies, the first candidate is returned.

    Raises:
        ConfigError: when no environments folder can be found.
    """
    try:
        first = find_environments_dir().parent.parent
    except ConfigError:
        # A variable naming a missing folder still hints where the checkout is;
        # the parameter check reports the folder itself.
        named = os.environ.get(ENVIRONMENTS_VARIABLE)
        if not named:
            raise
        first = Path(named).parent.parent
    here = Path.cwd().resolve()
    for folder in (first, here, *here.parents, Path(__file__).resolve().parent.parent):
        if any((folder / "notebooks" / sub).is_dir() for sub in NOTEBOOK_FOLDERS):
            return folder
    return first


def find_notebooks_dir() -> Path:
    """Return the project's ``notebooks`` folder (see ``find_project_root``)."""
    return find_project_root() / "notebooks"


def runbook_name(path: str | Path) -> str:
    """Return the runbook name of a notebook file.

    The leading number and the extension go: ``01-api-down.ipynb`` is ``api-down``.
    """
    return _NUMBER_PREFIX.sub("", Path(path).stem, count=1)


def notebook_key(path: str | Path) -> str:
    """How a record names its notebook: relative to the project, else absolute.

    ``/home/me/ops/notebooks/incidents/01-api-down.ipynb`` in the project at
    ``/home/me/ops`` is ``notebooks/incidents/01-api-down.ipynb``.
    """
    absolute = Path(path).absolute()
    try:
        return absolute.relative_to(find_project_root().absolute()).as_posix()
    except ValueError:
        return absolute.as_posix()


def list_notebooks() -> list[Path]:
    """Return every runbook notebook under the incidents and procedures folders."""
    folder = find_notebooks_dir()
    found: list[Path] = []
    for sub in NOTEBOOK_FOLDERS:
        found.extend(sorted((folder / sub).glob("*.ipynb")))
    return found


def resolve_notebook(name_or_path: str) -> Path:
    """Find the notebook a command line names.

    Args:
        name_or_path: an existing file path (used as is), or a runbook name in one
            of the forms ``api-down``, ``01-api-down`` or ``incidents/01-api-down``
            (with or without ``.ipynb``).

    Returns:
        The notebook's path.

    Raises:
        RunError: when nothing or more than one notebook matches.
    """
    given = Path(name_or_path)
    if given.is_file():
        return given

    key = name_or_path.strip().removesuffix(".ipynb")
    notebooks = list_notebooks()
    matches = [path for path in notebooks if key in _names_of(path)]
    if len(matches) != 1:
        raise _resolve_error(name_or_path, matches, notebooks)
    return matches[0]


def _resolve_error(given: str, matches: list[Path], notebooks: list[Path]) -> RunError:
    if matches:
        shown = ", ".join(_relative_name(path) for path in matches)
        return RunError(
            f"notebook: got {given!r}, which matches several notebooks ({shown}); "
            f"name one with its folder, such as {_relative_name(matches[0])!r}"
        )
    known = ", ".join(sorted({runbook_name(path) for path in notebooks})) or "none"
    return RunError(
        f"notebook: got {given!r}, expected an existing .ipynb path or a runbook "
        f"name; known runbooks: {known}"
    )


def _names_of(path: Path) -> set[str]:
    return {runbook_name(path), path.stem, _relative_name(path)}


def _relative_name(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def read_parameters(path: str | Path) -> dict[str, ParameterSpec]:
    """Read the parameters a notebook declares, without running it.

    Args:
        path: the notebook file.

    Returns:
        The parameters by name, in the order the cell declares them.

    Raises:
        RunError: when the notebook cannot be read, has no parameters cell or more
            than one, or a line of the cell is not ``name: type = literal``.
    """
    path = Path(path)
    source = _parameters_source(path)
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        problem = f"not valid Python ({error.msg})"
        raise _cell_error(path, error.lineno or 0, problem) from error

    lines = source.splitlines()
    specs: dict[str, ParameterSpec] = {}
    for node in tree.body:
        spec = _parse_statement(node, lines, path)
        if spec.name in specs:
            raise _cell_error(path, node.lineno, f"{spec.name!r} is declared twice")
        specs[spec.name] = spec
    logger.debug("parameters read path=%s names=%s", path, list(specs))
    return specs


def _parameters_source(path: Path) -> str:
    cells = [cell for cell in _read_cells(path) if PARAMETERS_TAG in _tags(cell)]
    if len(cells) != 1 or cells[0].get("cell_type") != "code":
        raise RunError(
            f"{path}: found {len(cells)} cells tagged {PARAMETERS_TAG!r}, expected "
            "exactly one code cell; tag the cell holding the defaults, and only it"
        )
    source = cells[0].get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _read_cells(path: Path) -> list[dict[str, Any]]:
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        cells = notebook["cells"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RunError(
            f"notebook: could not read {str(path)!r} ({error!r}); expected a Jupyter "
            "notebook file (.ipynb, nbformat 4)"
        ) from error
    return [cell for cell in cells if isinstance(cell, dict)]


def _tags(cell: dict[str, Any]) -> list[str]:
    metadata = cell.get("metadata")
    tags = metadata.get("tags") if isinstance(metadata, dict) else None
    return tags if isinstance(tags, list) else []


def _parse_statement(node: ast.stmt, lines: list[str], path: Path) -> ParameterSpec:
    if isinstance(node, ast.Assign):
        raise _cell_error(path, node.lineno, "a name without a type annotation")
    if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
        raise _cell_error(
            path, node.lineno, "a statement other than 'name: type = value'"
        )

    name = node.target.id
    type_name = ast.unparse(node.annotation).replace(" ", "")
    if type_name not in SUPPORTED_TYPES:
        raise _cell_error(
            path,
            node.lineno,
            f"{name}: type {type_name!r} is not one of {SUPPORTED_TYPES}",
        )
    default = _literal_default(node, name, type_name, path)
    return ParameterSpec(name, type_name, default, _trailing_comment(node, lines))


def _literal_default(
    node: ast.AnnAssign, name: str, type_name: str, path: Path
) -> object:
    if node.value is None:
        raise _cell_error(path, node.lineno, f"{name}: no default value")
    try:
        value = ast.literal_eval(node.value)
    except ValueError as error:
        raise _cell_error(
            path,
            node.lineno,
            f"{name}: default {ast.unparse(node.value)!r} is not a literal",
        ) from error

    if not is_of_type(value, type_name):
        raise _cell_error(
            path, node.lineno, f"{name}: default {value!r} is not of type {type_name}"
        )
    return float(value) if type_name == "float" else value


def _trailing_comment(node: ast.AnnAssign, lines: list[str]) -> str:
    last = lines[(node.end_lineno or node.lineno) - 1]
    rest = last[node.end_col_offset or len(last) :]
    _, hash_sign, comment = rest.partition("#")
    return comment.strip() if hash_sign else ""


def _cell_error(path: Path, line: int, problem: str) -> RunError:
    return RunError(
        f"{path}: parameters cell line {line}: {problem}; expected one "
        f"'name: type = literal  # help' per line, with a type among {SUPPORTED_TYPES}"
    )


def parse_notebook(text: str) -> nbformat.NotebookNode:
    """Parse notebook JSON text into a version 4 notebook node."""
    import nbformat

    nb: nbformat.NotebookNode = nbformat.reads(text, as_version=4)  # type: ignore[no-untyped-call]
    return nb


def dump_notebook(nb: nbformat.NotebookNode) -> str:
    """Serialize a notebook node the way Jupyter writes it."""
    import nbformat

    text: str = nbformat.writes(nb)  # type: ignore[no-untyped-call]
    return text


def collect_outputs(nb: Mapping[str, Any], mime: str) -> list[Any]:
    """Return every output value of one MIME type in an executed notebook, in order."""
    found = []
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data") or {}
            if mime in data:
                found.append(_plain_json(data[mime]))
    return found


def collect_verdict(nb: Mapping[str, Any]) -> dict[str, Any] | None:
    """Return the last verdict an executed notebook displayed, or None."""
    verdicts = [v for v in collect_outputs(nb, VERDICT_MIME) if isinstance(v, dict)]
    if not verdicts:
        return None
    missing = [key for key in VERDICT_KEYS if key not in verdicts[-1]]
    if missing:
        logger.warning("verdict lacks keys missing=%s", missing)
    return verdicts[-1]


def _plain_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return json.loads(json.dumps(value))


def cell_timings(nb: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return one row per code cell: index, first source line, duration, status."""
    rows = []
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        papermill = _papermill(cell)
        source = "".join(cell.get("source", "")).strip().splitlines()
        rows.append(
            {
                "index": index,
                "source": source[0][:80] if source else "",
                "duration_s": papermill.get("duration"),
                "status": papermill.get("status"),
            }
        )
    return rows


def started_cells(nb: nbformat.NotebookNode) -> list[int]:
    """The indexes of the cells papermill began to run, in order."""
    return [i for i, cell in enumerate(nb.cells) if _papermill(cell).get("start_time")]


def mark_stopped_cell(nb: nbformat.NotebookNode, error: Mapping[str, Any]) -> None:
    """Record where a run stopped when no cell raised.

    After a kernel death or a timeout papermill marks the stopped cell and every
    later one "completed"; here the stopped cell becomes "failed" with an error
    output, later cells "pending", and a banner goes on top. A run stopped
    before any cell began has every cell "pending": none ran.
    """
    started = started_cells(nb)
    if started:
        _mark_from(nb.cells, started[-1], error)
    else:
        for cell in nb.cells:
            _papermill(cell, update=True)["status"] = "pending"
    # the banner goes on top, so the stopped cell's index moves down by one
    where = f"cell {started[-1] + 1}" if started else "before any cell ran"
    nb.cells.insert(0, _banner(_headline(error["kind"], where)))


def _headline(kind: str, where: str) -> str:
    """What the banner says: an interrupted run was aborted, the rest failed."""
    if kind == "interrupted":
        return f"This run was interrupted ({where}) and archived as aborted"
    return f"This run failed: {_FAILURE_TEXT[kind]} ({where})"


def _mark_from(cells: list[Any], stopped: int, error: Mapping[str, Any]) -> None:
    _papermill(cells[stopped], update=True).update(status="failed", exception=True)
    if cells[stopped].cell_type == "code":
        cells[stopped].outputs.append(
            _node(
                output_type="error",
                ename=error["ename"],
                evalue=error["evalue"],
                traceback=[],
            )
        )
    for cell in cells[stopped + 1 :]:
        _papermill(cell, update=True)["status"] = "pending"


_BANNER_NOTE = "The notebook below is as it was when the run stopped."


def _banner(headline: str) -> nbformat.NotebookNode:
    return _node(
        cell_type="markdown",
        id=uuid.uuid4().hex[:8],
        metadata=_node(tags=[_ERROR_TAG]),
        source=f"**{headline}.** {_BANNER_NOTE}",
    )


def _node(**fields: Any) -> nbformat.NotebookNode:
    import nbformat

    return nbformat.NotebookNode(fields)  # type: ignore[no-untyped-call]


def _papermill(cell: Mapping[str, Any], *, update: bool = False) -> dict[str, Any]:
    """Return a cell's papermill metadata; with update, create it when missing."""
    if update:
        created: dict[str, Any] = cell["metadata"].setdefault("papermill", {})
        return created
    found = cell.get("metadata", {}).get("papermill")
    return found if isinstance(found, dict) else {}


def join_streams(nb: nbformat.NotebookNode) -> None:
    """Join consecutive stream outputs, so no secret is split across two."""
    for cell in nb.cells:
        joined: list[Any] = []
        for output in cell.get("outputs", []):
            last = joined[-1] if joined else None
            if (
                last is not None
                and output.output_type == last.output_type == "stream"
                and output.name == last.name
            ):
                last.text += output.text
            else:
                joined.append(output)
        if "outputs" in cell:
            cell.outputs = joined


def failed_cell_index(nb: nbformat.NotebookNode) -> int | None:
    """Return the index of the first cell papermill (or the runner) marked failed."""
    for index, cell in enumerate(nb.cells):
        if _papermill(cell).get("status") == "failed":
            return index
    return None
