"""What a CLI run produced, and the house rules for how it must look (shared by the CLI tests)."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str
    secrets: Iterable[str] = field(default=(), compare=False)

    def ok(self) -> Result:
        assert self.code == 0, f"exit {self.code}: {self.err}"
        assert "Traceback" not in self.out + self.err
        return self

    def refused(self, *needles: str) -> Result:
        """Exit 2, exactly one line 'error: ...' on stderr, no traceback, no secret."""
        assert self.code == 2, f"exit {self.code}; stdout={self.out!r} stderr={self.err!r}"
        assert "Traceback" not in self.out + self.err
        lines = self.err.splitlines()
        assert len(lines) == 1, f"expected one line, got {self.err!r}"
        assert lines[0].startswith("error: "), lines[0]
        assert self.err.endswith("\n")
        for needle in needles:
            assert needle.lower() in lines[0].lower(), f"{needle!r} not in {lines[0]!r}"
        for secret in self.secrets:
            assert secret not in self.out + self.err
        return self


def run_in_process(args: Iterable[object], secrets: Iterable[str]) -> Result:
    """``fabtrust ARGS`` in this process (``main()``), its output captured."""
    from fabtrust.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return Result(code, out.getvalue(), err.getvalue(), secrets=tuple(secrets))


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """These variables set (and FABTRUST_HOME/FABTRUST_DB unset) for the block, then restored."""
    saved = {k: os.environ.get(k) for k in (*values, "FABTRUST_HOME", "FABTRUST_DB")}
    os.environ.pop("FABTRUST_HOME", None)
    os.environ.pop("FABTRUST_DB", None)
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
