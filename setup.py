"""Build the compiled scanner core.

The extension is optional: if it cannot be compiled (no compiler, no Python headers), ptfast
still installs and runs on its pure-Python twin (ptfast/scan/_procscan_py.py) and says so in
`ptfast --version`. PTFAST_REQUIRE_COMPILED=1 makes a failed compile fail the build (CI, wheels).
"""
import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

compiled_core_required = bool(os.environ.get("PTFAST_REQUIRE_COMPILED"))

extensions = cythonize(
    [Extension("ptfast.scan._procscan", sources=["src_pyx/_procscan.pyx"],
               extra_compile_args=["-O2"])],
    include_path=["src_pyx"],
    compiler_directives={
        "language_level": "3",
        "boundscheck": False,
        "wraparound": False,
        "cdivision": True,
        "initializedcheck": False,
        "embedsignature": True,
    },
)
# cythonize() returns new Extension objects without `optional`: set it on those, so that
# setuptools' build_ext turns a compile or link error into a warning.
for extension in extensions:
    extension.optional = not compiled_core_required

NOT_BUILT = """
************************************************************************************
WARNING: ptfast's compiled core could not be built:
  {error}
ptfast is installed and works, on its pure-Python core, which is several times
slower on a big host. To build the compiled core, install a C compiler and the
Python headers (Debian, Ubuntu: apt-get install gcc python3-dev), then run the
same pip install again. `ptfast --version` says which core runs.
************************************************************************************
"""


class BuildExtSaying(build_ext):
    """build_ext that says plainly when the optional core failed (setuptools' own one-line
    warning is easy to miss among the compiler's output)."""

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            if not ext.optional:
                raise
            sys.stderr.write(NOT_BUILT.format(error=exc))
            sys.stderr.flush()
            raise


setup(ext_modules=extensions, cmdclass={"build_ext": BuildExtSaying})
