"""Where output goes: results to stdout, messages and progress to stderr; errors to exit codes."""

from __future__ import annotations

import functools
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console

from advgrad.core.errors import AdvgradError, AdvgradWarning, ExitCode, Notice, first_line
from advgrad.core.text import printable

if TYPE_CHECKING:  # torch-free at start-up: `advgrad --help`, `docs`, `config` and completion never load it
    from advgrad.execution.progress import ProgressTracker


class _Console(Console):
    """A console that shows text as written: every string it prints, alone or in a table cell,
    has its control characters escaped (:func:`advgrad.core.text.printable`; a name from a file cannot
    drive the terminal), and ``[red]`` or ``:smile:`` in it stay as they are (no markup, no emoji)."""

    def __init__(self, **options: Any):
        super().__init__(markup=False, emoji=False, highlight=False, **options)

    def render_str(self, text: str, **options: Any):
        return super().render_str(printable(text, newlines=True), **options)

    def print_trimmed(self, renderable: Any) -> None:
        """Print ``renderable`` laid out as :meth:`print` would, without the spaces that pad each line
        to the console's width (a listing to read or to diff has no trailing spaces)."""
        from rich.segment import Segment
        from rich.text import Text

        for line in self.render_lines(renderable, self.options, pad=False):
            segments = [s for s in line if not s.control]
            while segments and not segments[-1].text.strip():
                segments.pop()
            if segments:
                segments[-1] = Segment(segments[-1].text.rstrip(), segments[-1].style)
            self.print(Text.assemble(*((s.text, s.style) for s in segments)), soft_wrap=True)


out = _Console(soft_wrap=False)
err = _Console(stderr=True, soft_wrap=True)  # one message, one line

_state = {"debug": os.environ.get("ADVGRAD_DEBUG", "") not in ("", "0"), "rank": 0}


def set_debug(flag: bool) -> None:
    _state["debug"] = _state["debug"] or flag


def quiet_rank(rank: int) -> None:
    """Silence this process (a rank other than 0 of a distributed run): no results, messages or
    progress; only its errors are printed, prefixed with its rank, so a failure says where it was."""
    _state["rank"] = rank
    out.quiet = err.quiet = True


# Parameters whose flag is not "--" + the name with dashes (the library's ``model_args`` is the
# repeatable ``--model-arg``; AutoAttack's ``version`` is ``--aa-version``, its ``param(flag=...)``,
# which tests/test_cli_app.py keeps in step). Every other parameter is its flag: ``batch_size`` is ``--batch-size``.
_FLAGS = {"model_args": "--model-arg", "resume": "--resume/--no-resume", "version": "--aa-version"}


def flag(param: str) -> str:
    """The command-line flag of a library parameter: ``batch_size`` → ``--batch-size``."""
    return _FLAGS.get(param) or "--" + param.replace("_", "-")


def error_text(exc: AdvgradError) -> str:
    """An error's message as the CLI shows it: the parameters it names spelled as flags."""
    return exc.render(flag)


def notice_text(message: str) -> str:
    """A warning as the CLI shows it: a :class:`~advgrad.core.errors.Notice` with its parameters as flags."""
    return message.render(flag) if isinstance(message, Notice) else message


# Characters of one error or warning line: a longer one (a name from a file no helper cut short)
# keeps its start and its end, where the advice is.
MESSAGE_WIDTH = 2000


def _one_line(text: str) -> str:
    text = printable(text)
    if len(text) <= MESSAGE_WIDTH:
        return text
    head, tail = text[: MESSAGE_WIDTH * 3 // 4], text[-(MESSAGE_WIDTH // 4) :]
    return f"{head} … ({len(text) - len(head) - len(tail):,} characters left out) … {tail}"


def print_error(text: str) -> None:
    """The one way an error reaches stderr: one line, control characters escaped (a message may
    quote a file, or a library's error text that quotes one), at most :data:`MESSAGE_WIDTH` long."""
    text = _one_line(text)
    if _state["rank"]:
        sys.stderr.write(f"[rank {_state['rank']}] {text}\n")
        sys.stderr.flush()
    else:
        err.print(text, style="red")


def info(message: str) -> None:
    """A message for people, on stderr: one line as :func:`print_error` writes one (a
    :class:`~advgrad.core.errors.Notice` with its parameters as flags)."""
    err.print(_one_line(notice_text(message)))


def warn(message: str) -> None:
    """A warning on stderr: one line as :func:`print_error` writes one."""
    err.print(f"warning: {_one_line(message)}", style="yellow")


def print_json(data: Any) -> None:
    """Machine-readable output on stdout, nothing else mixed in."""
    sys.stdout.write(json.dumps(data, indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    text = str(message).strip().splitlines()[0] if str(message).strip() else category.__name__
    warn(text)


F = TypeVar("F", bound=Callable[..., Any])


def route_warnings(verbose: bool) -> None:
    """Inside a ``warnings.catch_warnings()`` block: advgrad's own warnings (:class:`AdvgradWarning`)
    as one line each; other libraries' (torch, onnx2torch, matplotlib…) only with ``verbose`` (-v)
    or --debug, since they are not about the user's input. The command line's choice alone: the
    Python API leaves the caller's warning filters as they are."""
    warnings.showwarning = _one_line_warning
    if verbose or _state["debug"]:
        warnings.simplefilter("default")
        return
    warnings.simplefilter("ignore")
    warnings.filterwarnings("default", category=AdvgradWarning)


def handle_errors(fn: F) -> F:
    """Turn advgrad's errors into one line on stderr and the documented exit codes; warnings as
    :func:`route_warnings` says (the command's ``verbose`` option, when it has one)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            route_warnings(bool(kwargs.get("verbose")))
            return _run(fn, args, kwargs)

    return wrapper  # type: ignore[return-value]


def _run(fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    try:
        return fn(*args, **kwargs)
    except (typer.Exit, typer.Abort):
        raise
    except AdvgradError as exc:
        if _state["debug"]:
            raise
        print_error(f"error: {error_text(exc)}")
        raise typer.Exit(int(exc.exit_code)) from None
    except KeyboardInterrupt as exc:  # Ctrl-C, or an Interrupted run saying what it kept
        err.print(str(exc) or "interrupted", markup=False)
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    except MemoryError:
        print_error("error: out of memory; lower --batch-size")
        raise typer.Exit(int(ExitCode.BAD_INPUT)) from None
    except Exception as exc:
        if _state["debug"]:
            raise
        if type(exc).__name__ == "OutOfMemoryError":
            print_error("error: the device ran out of memory; lower --batch-size")
            raise typer.Exit(int(ExitCode.BAD_INPUT)) from None
        if "torch" in sys.modules:  # a compile error can only come from torch
            from advgrad.execution.runtime import compile_failed, is_compile_error

            if is_compile_error(exc):  # raised mid-run, e.g. when a new batch size recompiles
                print_error(f"error: {error_text(compile_failed(exc))}")
                raise typer.Exit(int(ExitCode.BAD_INPUT)) from None
        print_error(
            f"internal error: {type(exc).__name__}: {first_line(exc, 300)} (rerun with --debug for a traceback "
            "and please report it)"
        )
        raise typer.Exit(int(ExitCode.INTERNAL)) from None


@contextmanager
def sweep_progress(
    total: int | None,
    *,
    batches: int | None = None,
    verbose: bool = False,
    eps_text: Callable[[float], str] | None = None,
) -> Iterator[ProgressTracker]:
    """A :class:`ProgressTracker` for a sweep: a status line with attack, ε, step, share done and
    ETA on stderr when it is a terminal (redrawn at most five times a second; Rich's own refresh
    keeps the elapsed time moving); with ``verbose`` one line per finished attack × ε, terminal or
    not (CI logs). Silent otherwise."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from advgrad.execution.progress import ProgressTracker

    options = {} if eps_text is None else {"eps_text": eps_text}
    live = err.is_terminal and not err.quiet
    if not live:
        finished = (lambda line: err.print(line, markup=False)) if verbose and not err.quiet else None
        yield ProgressTracker(total, finished=finished, batches=batches, **options)
        return
    bar = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    with bar:
        task = bar.add_task("starting", total=None if total is None else 1000)

        def status(line: str, fraction: float | None) -> None:
            bar.update(task, description=printable(line), completed=None if fraction is None else int(1000 * fraction))

        finished = (lambda line: bar.console.print(line, markup=False)) if verbose else None
        yield ProgressTracker(total, status=status, finished=finished, batches=batches, **options)
