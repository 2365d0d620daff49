"""Render the Python standard library documentation as plain-text documents for the demo.

Each public top-level module of ``sys.stdlib_module_names`` is rendered with pydoc in its own
process, because importing some modules has side effects or can hang. Output that differs
between machines or runs (file paths, memory addresses, environment variables) is removed so
that a second demo run uploads identical text and the platform can recognize the duplicates.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

from tqdm import tqdm

logger = logging.getLogger(__name__)

# pydoc repeats every inherited method under each class, so a few modules render to far more
# text than they document: on Python 3.11, builtins is about 300 KB and ast about 255 KB. The cap
# keeps one module from dominating the upload and the ingestion time of the demo.
MAX_TEXT_BYTES = 200_000

# Seconds one module may take to import and render before it is skipped. Most modules need
# well under a second.
RENDER_TIMEOUT_SECONDS = 60.0

MAX_TITLE_CHARS = 120

EXCLUDED_MODULES = frozenset(
    {
        "antigravity",  # opens a web browser when imported
        "this",  # prints the Zen of Python when imported
        "idlelib",  # the IDLE editor, a Tk program
        "tkinter",  # the Tk GUI toolkit
        "turtle",  # Tk turtle graphics
        "turtledemo",  # Tk turtle graphics demos
        "test",  # CPython's own regression tests
    }
)

# Seconds the parent waits past the per-module timeout before it kills a lane's renderer, for
# the rare module that blocks the renderer's own alarm.
_WATCHDOG_GRACE_SECONDS = 30.0

# A renderer, run as `python -I -c _RENDERER TIMEOUT` with a JSON list of module names on stdin,
# writes one JSON line per module to stdout. Isolated mode (-I) ignores PYTHON* variables and
# the user site-packages. Each module is imported in a child forked from this clean interpreter,
# so the text does not depend on what was rendered before. In one shared process, pydoc would
# list whichever C submodules were loaded under SUBMODULES, show a __warningregistry__ filled
# by earlier imports, and list other classes for pyexpat once xml had been rendered. A child
# that outlives TIMEOUT seconds is killed by SIGALRM. Output of the modules themselves goes to
# /dev/null, so a module that prints while importing cannot corrupt the JSON lines.
# NOTE: without os.fork (Windows) the modules are rendered one after the other in the renderer
# itself, so their text can depend on the order.
_RENDERER = r"""
import importlib, json, math, os, pydoc, signal, sys

timeout = math.ceil(float(sys.argv[1]))
names = json.load(sys.stdin)
result_fd = os.dup(1)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
machine_paths = {
    "sys.executable": sys.executable,
    "sys.prefix": sys.prefix,
    "sys.exec_prefix": sys.exec_prefix,
    "sys.base_prefix": sys.base_prefix,
    "sys.base_exec_prefix": sys.base_exec_prefix,
    "home": os.path.expanduser("~"),
}

def render(name):
    try:
        module = importlib.import_module(name)
    except BaseException as error:
        return {"module": name, "error": f"import failed: {type(error).__name__}: {error}"}
    try:
        text = pydoc.render_doc(module, renderer=pydoc.plaintext)
    except BaseException as error:
        return {"module": name, "error": f"pydoc failed: {type(error).__name__}: {error}"}
    docstring = module.__doc__ if isinstance(module.__doc__, str) else ""
    return {"module": name, "docstring": docstring, "text": text, "machine_paths": machine_paths}

def emit(result):
    with open(os.dup(result_fd), "wb") as output:
        output.write((json.dumps(result) + "\n").encode("ascii"))

def describe_exit(wait_status):
    code = os.waitstatus_to_exitcode(wait_status)
    if code == -signal.SIGALRM:
        return f"import and rendering timed out after {timeout} s"
    if code < 0:
        return f"rendering process was killed by signal {-code}"
    return f"rendering process exited with status {code}"

for name in names:
    if not hasattr(os, "fork"):
        emit(render(name))
        continue
    pid = os.fork()
    if pid == 0:
        exit_code = 70
        try:
            signal.alarm(timeout)
            result = render(name)
            signal.alarm(0)
            emit(result)
            exit_code = 0
        finally:
            os._exit(exit_code)
    _, wait_status = os.waitpid(pid, 0)
    if wait_status != 0:
        emit({"module": name, "error": describe_exit(wait_status)})
"""

# pydoc sections that name this machine's files rather than document the module.
_MACHINE_SECTIONS = frozenset({"FILE", "MODULE REFERENCE"})

# The repr() of some default values and module data contains memory addresses, which change on
# every run: "<object object at 0x7f1534d4c160>", or ctypes's "<PyDLL 'None', handle 7fd3fad942e0>".
# An address that pydoc cut short ends in "...". Shorter hex numbers, as in docstring examples,
# stay.
_MEMORY_ADDRESS = re.compile(
    r" at 0x(?:[0-9A-Fa-f]{6,}|[0-9A-Fa-f]*(?=\.\.\.))|, handle [0-9A-Fa-f]{6,}(?=>)"
)

# pydoc shortens a long value by cutting out its middle, as in "'/root/.pyenv/versi...on'", so
# only the start of a path remains. NOTE: this pattern only recognizes POSIX paths.
_CUT_PATH = re.compile(r"(['\"])(/[^'\"\s]*)(?=\.\.\.)")

# Install locations shared by many machines. Their text also appears in docstring examples such
# as site's "/usr/local/lib/python2.5/site-packages", so they are not replaced.
_SHARED_PATHS = frozenset({"", "/", "/usr", "/usr/local"})

_RST_UNDERLINE = re.compile(r"([=\-~^*#])\1{2,}")


@dataclasses.dataclass(frozen=True)
class ModuleDoc:
    """One standard library module rendered as a plain-text document."""

    module: str
    title: str
    text: str


class CorpusError(RuntimeError):
    """Raised when fewer standard library modules render than the caller requires."""


def list_stdlib_modules() -> list[str]:
    """Return the sorted public top-level standard library modules that the demo renders."""
    return sorted(
        name
        for name in sys.stdlib_module_names
        if not name.startswith("_") and name not in EXCLUDED_MODULES
    )


def render_stdlib_docs(
    min_modules: int = 150,
    max_modules: int | None = None,
    *,
    progress: bool = False,
    workers: int | None = None,
    timeout: float = RENDER_TIMEOUT_SECONDS,
    only: list[str] | None = None,
) -> list[ModuleDoc]:
    """Render standard library modules in sorted order, skipping those that fail to import.

    With `only` set, just those of the demo's modules are rendered. With max_modules set, the result is the first max_modules modules that render. Raises
    CorpusError when fewer than min_modules render. `workers` is the number of renderers run
    in parallel (default: the CPU count, at most 4) and `timeout` the seconds allowed for
    importing and rendering one module.
    """
    if max_modules is not None and max_modules < 1:
        raise ValueError(f"max_modules must be at least 1, got {max_modules}")
    if max_modules is not None and min_modules > max_modules:
        raise ValueError(f"min_modules ({min_modules}) is larger than max_modules ({max_modules})")
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if not timeout > 0:
        raise ValueError(f"timeout must be more than 0 seconds, got {timeout}")

    names = list_stdlib_modules()
    if only is not None:
        names = [name for name in names if name in set(only)]
    documents: list[ModuleDoc] = []
    skipped: dict[str, str] = {}
    stop = threading.Event()
    bar = tqdm(total=0, desc="Rendering", unit="module", disable=not progress)
    with bar, concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            position = 0
            while position < len(names):
                if max_modules is not None and len(documents) >= max_modules:
                    break
                # Render the next names in sorted order, only as many as are still needed (but
                # at least one per worker), so a small max_modules does not render everything.
                needed = len(names) if max_modules is None else max_modules - len(documents)
                batch = names[position : position + max(needed, workers)]
                position += len(batch)
                bar.total += len(batch)
                bar.refresh()

                for name, outcome in _render_batch(pool, batch, workers, timeout, stop):
                    if isinstance(outcome, ModuleDoc):
                        documents.append(outcome)
                    else:
                        skipped[name] = outcome
                        logger.info("module skipped module=%s reason=%s", name, outcome)
                        bar.set_postfix(skipped=len(skipped))
                    bar.update(1)
        finally:
            # After an error or Ctrl-C the lanes kill their renderers instead of finishing.
            stop.set()

    documents.sort(key=lambda document: document.module)
    if max_modules is not None:
        documents = documents[:max_modules]
    if len(documents) < min_modules:
        examples = "; ".join(f"{name}: {reason}" for name, reason in sorted(skipped.items())[:5])
        raise CorpusError(
            f"only {len(documents)} standard library modules rendered, fewer than the required "
            f"{min_modules}. Skipped {len(skipped)} modules: {examples or 'none'}."
        )
    return documents


def _render_batch(
    pool: concurrent.futures.ThreadPoolExecutor,
    names: list[str],
    workers: int,
    timeout: float,
    stop: threading.Event,
) -> Iterator[tuple[str, ModuleDoc | str]]:
    """Render names in `workers` lanes and yield each name with its document or skip reason."""
    results: queue.Queue[tuple[str, ModuleDoc | str]] = queue.Queue()
    lanes = [names[index::workers] for index in range(workers)]
    futures = [pool.submit(_render_lane, lane, timeout, results, stop) for lane in lanes if lane]
    for _ in names:
        while True:
            try:
                yield results.get(timeout=1.0)
                break
            except queue.Empty:
                # A lane that raised will never deliver its remaining results.
                for future in futures:
                    if future.done():
                        future.result()


def _render_lane(
    names: list[str], timeout: float, results: queue.Queue, stop: threading.Event
) -> None:
    """Render names with one renderer process, restarting it after a module that hangs it."""
    remaining = list(names)
    while remaining and not stop.is_set():
        process, lines = _start_renderer(remaining, timeout)
        try:
            _collect_results(process, lines, remaining, timeout, results, stop)
        finally:
            _stop_renderer(process)


def _collect_results(
    process: subprocess.Popen,
    lines: queue.Queue,
    remaining: list[str],
    timeout: float,
    results: queue.Queue,
    stop: threading.Event,
) -> None:
    """Move a renderer's results to `results` and their names out of `remaining`.

    Returns when all names are done, when the renderer ends early or stops responding (its
    current module is then reported as skipped), or when `stop` is set.
    """
    line_deadline = time.monotonic() + timeout + _WATCHDOG_GRACE_SECONDS
    while remaining and not stop.is_set():
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if time.monotonic() > line_deadline:
                results.put((remaining.pop(0), f"renderer stopped responding after {timeout:g} s"))
                return
            continue
        if line is None:
            status = process.wait()
            results.put((remaining.pop(0), f"renderer exited early with status {status}"))
            return
        result = json.loads(line)
        remaining.remove(result["module"])
        results.put((result["module"], _document_from_result(result)))
        line_deadline = time.monotonic() + timeout + _WATCHDOG_GRACE_SECONDS


def _start_renderer(names: list[str], timeout: float) -> tuple[subprocess.Popen, queue.Queue]:
    """Start a renderer for names and a thread that queues its output lines, then None at the end.

    The renderer gets an empty environment because pydoc prints default argument values, and
    some of them contain every environment variable (cgi.parse has environ=os.environ).
    SYSTEMROOT is kept because the subprocess documentation requires it in env on Windows.
    """
    environment = {key: os.environ[key] for key in ("SYSTEMROOT",) if key in os.environ}
    process = subprocess.Popen(
        [sys.executable, "-I", "-c", _RENDERER, str(timeout)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=environment,
        start_new_session=True,
    )
    process.stdin.write(json.dumps(names).encode("ascii"))
    process.stdin.close()

    lines: queue.Queue[bytes | None] = queue.Queue()

    def read_lines() -> None:
        with process.stdout:
            for line in process.stdout:
                lines.put(line)
        lines.put(None)

    threading.Thread(target=read_lines, name="renderer-output", daemon=True).start()
    return process, lines


def _stop_renderer(process: subprocess.Popen) -> None:
    """Kill a renderer that is still running, with the module children it forked."""
    if process.poll() is None:
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    process.wait()


def _document_from_result(result: dict) -> ModuleDoc | str:
    """Build the document from one renderer result, or return why the module was skipped."""
    if "error" in result:
        return result["error"]
    name = result["module"]
    text = cap_text(_clean_text(result["text"], result["machine_paths"]), name)
    return ModuleDoc(module=name, title=make_title(name, result["docstring"]), text=text)


# pydoc draws the body of a class behind "|" gutters ("    |  method(self)"); in chunks and
# quoted answers they are noise, so the bars and their indentation go.
_CLASS_GUTTER = re.compile(r"(?m)^[ \t]*(?:\|[ \t]?)+")


def _clean_text(text: str, machine_paths: dict[str, str]) -> str:
    """Remove the header line, machine-specific sections, addresses and local paths."""
    lines = text.splitlines()
    if lines and lines[0].startswith("Python Library Documentation:"):
        lines = lines[1:]
    text = "\n".join(strip_sections(lines, _MACHINE_SECTIONS)).strip("\n")
    text = _MEMORY_ADDRESS.sub("", text)
    text = _CLASS_GUTTER.sub("", text)
    return redact_paths(text, machine_paths) + "\n"


def strip_sections(lines: list[str], headings: frozenset[str]) -> list[str]:
    """Drop the pydoc sections with the given headings.

    A pydoc section starts with an unindented heading line and its body is indented, so the
    next unindented non-empty line starts the next section.
    """
    result: list[str] = []
    dropping = False
    for line in lines:
        if line and not line[0].isspace():
            dropping = line.strip() in headings
        if not dropping:
            result.append(line)
    return result


def redact_paths(text: str, machine_paths: dict[str, str]) -> str:
    """Replace each machine path in text with its label, such as "<sys.prefix>".

    Paths are replaced longest first, so sys.executable inside sys.prefix gets its own label.
    """
    labels: dict[str, str] = {}
    for label, path in machine_paths.items():
        if path not in _SHARED_PATHS:
            labels.setdefault(path, f"<{label}>")
    paths = sorted(labels, key=len, reverse=True)

    def replace_cut_path(match: re.Match[str]) -> str:
        start = match.group(2)
        if start.count("/") < 2:
            return match.group(0)
        for path in paths:
            if path.startswith(start):
                return match.group(1) + labels[path]
        return match.group(0)

    text = _CUT_PATH.sub(replace_cut_path, text)
    for path in paths:
        text = text.replace(path, labels[path])
    return text


def cap_text(text: str, module: str, limit: int = MAX_TEXT_BYTES) -> str:
    """Cut text to at most `limit` bytes of UTF-8 at a line end, and append a notice of the cut."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    notice = (
        f"\n[The pydoc text of {module} is {len(data)} bytes long; "
        f"this document keeps only its first part.]\n"
    )
    budget = limit - len(notice.encode("utf-8"))
    head = data[:budget].decode("utf-8", errors="ignore")
    line_end = head.rfind("\n")
    if line_end > 0:
        head = head[: line_end + 1]
    return head + notice


def make_title(module: str, docstring: str) -> str:
    """Build a title such as "csv — CSV parsing and writing" from the module's docstring."""
    summary = summarize_docstring(module, docstring)
    return f"{module} — {summary}" if summary else module


def summarize_docstring(module: str, docstring: str) -> str:
    """Return the first sentence of the docstring, without a repeated module name.

    Many docstrings wrap their first sentence over several lines, so the first line alone would
    often end mid-sentence. The result is cut to MAX_TITLE_CHARS at a word boundary.
    """
    # Docstrings such as "codecs -- Python Codec Registry", "Module difflib -- helpers for
    # computing deltas" or a bare "curses" heading repeat the name the title starts with.
    module_name = re.compile(
        rf"(?:module\s+)?{re.escape(module)}(?:\.py)?(?:\s+module)?(?:\s*(?:--|-|—|:)\s*|$)",
        re.IGNORECASE,
    )
    for paragraph in _paragraphs(docstring):
        match = module_name.match(paragraph)
        text = paragraph[match.end() :] if match else paragraph
        if text:
            return _first_sentence(text)
    return ""


def _paragraphs(docstring: str) -> Iterator[str]:
    """Yield the paragraphs of a docstring, each joined into one line.

    A paragraph ends at a blank line or before a list item. reStructuredText underlines, as in
    "ast\n~~~", are dropped, so the heading above them becomes a paragraph of its own.
    """
    lines: list[str] = []
    for line in docstring.strip().splitlines() + [""]:
        stripped = line.strip()
        if _RST_UNDERLINE.fullmatch(stripped):
            continue
        if not stripped or stripped.startswith(("- ", "* ")):
            if lines:
                yield " ".join(" ".join(lines).split())
            lines = [stripped] if stripped else []
        else:
            lines.append(stripped)


def _first_sentence(text: str) -> str:
    """Return the first sentence of text without its final period, cut to MAX_TITLE_CHARS."""
    words: list[str] = []
    for word in text.split():
        words.append(word)
        if _ends_sentence(word):
            break
    sentence = " ".join(words).rstrip(".:")
    if len(sentence) > MAX_TITLE_CHARS:
        sentence = sentence[: MAX_TITLE_CHARS - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return sentence[:1].upper() + sentence[1:]


def _ends_sentence(word: str) -> bool:
    """Tell whether a word ends a sentence, leaving abbreviations such as "e.g." and "a.k.a." alone."""
    if not word.endswith((".", "!", "?")):
        return False
    stem = word.rstrip(".!?").rstrip(")]\"'")
    return len(stem) > 1 and "." not in stem
