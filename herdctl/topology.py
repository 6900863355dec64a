"""The topology a running herd owns, and which one a `herdctl` command uses.

A supervisor keeps the text of the topology file as it read it (`Owned`), whatever happens to
the file later. It starts nodes from its own copy, `run_dir/herdctl.topology.yaml` (the same
document with its folders made absolute, so it reads the same from there), so a node
restarted after an edit runs what the supervisor watches. Only `herdctl reload` changes it.

On the CLI side, `resolve` gives the topology a command works on: the running supervisor's
copy when one answers (so `status`, `down`, `tail`, `restart` work whatever the file on disk
says, valid, invalid or missing), else the file itself (whose errors are raised as they are),
and one line saying how the file on disk differs from what the herd runs.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from herdctl import control
from node.config import ConfigError, HerdConfig, parse_config, read_config_text
from node.fields import Invalid, load_yaml
from node.private import private_dir, replace_private

COPY_NAME = "herdctl.topology.yaml"
_FOLDERS = ("log_dir", "data_dir", "run_dir", "secret_file")
_COPY_HEADER = (
    "# Written by herdctl: the topology this herd runs, its folders made absolute.\n"
    "# Edit the topology file itself, then `herdctl reload`.\n"
)


@dataclass(frozen=True, slots=True)
class Owned:
    """The topology a supervisor runs: the file's text as it was read, and what it says."""

    text: str
    config: HerdConfig  # its path is the user's file

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Owned:
        """The file at `path`, read once; ConfigError if it cannot be read or is not valid."""
        text = read_config_text(path)
        return cls(text, parse_config(text, Path(path)))


def copy_path(run_dir: Path) -> Path:
    return run_dir / COPY_NAME


def write_copy(owned: Owned) -> HerdConfig:
    """Write the copy nodes are started from (0600, atomically); the config read from it.

    The copy must say exactly what the file said, or nodes would run something else than
    the supervisor watches: a copy that does not is an error, never written.
    """
    config = owned.config
    doc = load_yaml(owned.text)
    assert isinstance(doc, dict), "a valid topology is a mapping"
    folders = {name: str(getattr(config, name)) for name in _FOLDERS}
    import yaml  # only the supervisor writes the copy

    text = _COPY_HEADER + yaml.safe_dump({**doc, **folders}, sort_keys=False)
    path = copy_path(config.run_dir)
    copied = parse_config(text, path)
    if dataclasses.replace(copied, path=config.path) != config:
        raise ConfigError(f"{config.path.name}: cannot make a faithful copy at {path}")
    private_dir(path.parent)
    replace_private(path, text.encode())
    return copied


# --- the CLI side ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resolved:
    """The topology a command works on, and where it came from."""

    config: HerdConfig
    supervised: bool  # a supervisor answered: `config` is its copy
    drift: str | None = None  # how the file on disk differs from what the herd runs


def resolve(path: Path) -> Resolved:
    """The running supervisor's topology if one answers, else the file at `path` (its
    ConfigError raised when it is not valid and no supervisor runs)."""
    text: str | None = None  # read once, for all that follows; None: it cannot be read
    disk: Owned | None = None
    error: ConfigError | None = None
    try:
        text = read_config_text(path)
        disk = Owned(text, parse_config(text, path))
    except ConfigError as e:
        error = e
    run_dir = disk.config.run_dir if disk is not None else guess_run_dir(path, text)
    running = supervisor_topology(run_dir, same_as=disk)
    if running is None:
        if error is not None:
            raise error
        assert disk is not None
        return Resolved(disk.config, supervised=False)
    return Resolved(running.config, supervised=True, drift=drift(path, text, running))


def supervisor_topology(
    run_dir: Path, timeout: float = 5.0, *, same_as: Owned | None = None
) -> Owned | None:
    """What the supervisor in `run_dir` runs, if one answers (and says). When it runs the
    text of `same_as` from the same place, that is the answer, not parsed again."""
    try:
        answer = control.request(control.socket_path(run_dir), {"cmd": "ping"}, timeout=timeout)
    except control.ControlError:
        return None
    text, where = answer.get("topology"), answer.get("config")
    if not isinstance(text, str) or not isinstance(where, str):
        return None  # a supervisor from before topologies were owned
    if same_as is not None and same_as.text == text and same_as.config.path == Path(where):
        return same_as
    try:
        return Owned(text, parse_config(text, Path(where)))
    except ConfigError:
        return None


def guess_run_dir(path: Path, text: str | None) -> Path:
    """run_dir as the invalid file at `path`, whose `text` this is (None: it could not be
    read), still says it; the default `run` when it cannot tell."""
    base = Path(os.path.abspath(path)).parent
    try:
        doc = None if text is None else load_yaml(text)
    except Invalid:
        doc = None
    raw = doc.get("run_dir") if isinstance(doc, dict) else None
    where = raw if isinstance(raw, str) and raw.strip() else "run"
    return Path(os.path.normpath(base / Path(where).expanduser()))


def drift(path: Path, text: str | None, running: Owned) -> str | None:
    """One line when the file at `path`, whose `text` this is (None: it could not be read),
    says something else than what the herd runs."""
    name = path.name
    if text is None:
        return f"{name} cannot be read (the herd runs its own copy): restore it to reload"
    if text == running.text:
        return None
    try:
        disk = parse_config(text, running.config.path)
    except ConfigError as e:
        why = str(e).removeprefix(f"{running.config.path.name}: ")
        return (
            f"{name} changed since the herd started and is not valid ({why}); "
            "the herd runs its own copy: fix it, then herdctl reload"
        )
    if disk == running.config:
        return None  # comments or layout only
    return f"{name} changed since the herd started: herdctl reload to apply"
