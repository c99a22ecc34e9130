"""The optional C fast lane of the capture reader (phonehome._lane).

Everything else about the package is in pyproject.toml. The extension is optional: where it does
not build (no compiler, no Python headers), phonehome reads captures with its pure-Python loop.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "phonehome._lane",
            ["src/phonehome/_lane.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"],
        )
    ]
)
