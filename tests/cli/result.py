"""What a CLI run produced, and the house rules for how it must look (shared by the CLI tests)."""

from __future__ import annotations

from collections.abc import Iterable
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
