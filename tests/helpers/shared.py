"""Processes that the cases of one parametrised test only read, started once for all of them.

A test run on both cores (or with a few settings) that starts its processes in each case pays
for them in each case (~25 ms of CPU per Python child). Where a case only reads them (a scan, a
``run --once`` into its own ServiceDir) and changes nothing about them, the first case to need
them starts them and the others read the same ones; once as many cases as share them have used
them, they are stopped (alive, they would cost every later scan of the module). Each case still
stands alone: run by itself (``-k``, another xdist worker) it starts them itself.
"""

from __future__ import annotations

from typing import Callable


class SharedChildren:
    """``shared(key, *starts)``: the children the ``starts`` return (one each), started by the
    first call with ``key``; ``stop_used_up()`` (after each test) stops those ``cases`` tests
    have asked for, ``stop()`` (at the module's end) all the others."""

    def __init__(self, cases: int) -> None:
        self.cases = cases
        self._by_key: dict = {}
        self._uses: dict = {}
        self._every: list = []          # also those of a call that failed half way

    def __call__(self, key: str, *starts: Callable) -> list:
        if key not in self._by_key:
            children: list = []
            self._every.append(children)
            for start in starts:
                children.append(start())
            self._by_key[key] = children
            self._uses[key] = 0
        self._uses[key] += 1
        return self._by_key[key]

    def stop_used_up(self) -> None:
        for key in [key for key, uses in self._uses.items() if uses >= self.cases]:
            children = self._by_key.pop(key)
            del self._uses[key]
            self._every.remove(children)
            for child in children:
                child.stop()

    def stop(self) -> None:
        for children in self._every:
            for child in children:
                child.stop()
        self._every.clear()
        self._by_key.clear()
        self._uses.clear()
