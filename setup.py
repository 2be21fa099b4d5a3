"""Build the compiled scanner core.

The extension is optional: if it cannot be compiled (no compiler, no Python headers), ptfast
still installs and runs on its pure-Python twin (ptfast/_procscan_py.py) and says so in
`ptfast --version`. PTFAST_REQUIRE_COMPILED=1 makes a failed compile fail the build (CI, wheels).
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

compiled_core_required = bool(os.environ.get("PTFAST_REQUIRE_COMPILED"))

extensions = cythonize(
    [Extension("ptfast._procscan", sources=["src_pyx/_procscan.pyx"],
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

setup(ext_modules=extensions)
