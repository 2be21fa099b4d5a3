"""Build the compiled scanner core.

The extension is optional: if it cannot be compiled, ptfast still installs and runs on its
pure-Python twin (ptfast/_procscan_py.py) and says so in `ptfast --version`.
"""
from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        "ptfast._procscan",
        sources=["src_pyx/_procscan.pyx"],
        extra_compile_args=["-O2"],
        optional=True,
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["src_pyx"],
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    ),
)
